"""Background work: the Taskiq broker, tasks and schedules."""
