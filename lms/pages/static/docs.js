// Swagger UI over the generated document (loaded from npm's swagger-ui-dist).
window.ui = SwaggerUIBundle({ url: "/api/v1/openapi.json", dom_id: "#docs", deepLinking: true });
