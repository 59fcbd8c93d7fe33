"""Self-paced quizzes: authoring, attempts, deadlines and automatic grading."""
