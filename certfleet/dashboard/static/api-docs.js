// Swagger UI for /api/docs, started from a file because the pages' CSP runs no inline script.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("swagger-ui");
    var csrf = document.querySelector("meta[name=csrf-token]").getAttribute("content");
    window.ui = SwaggerUIBundle({
      url: root.getAttribute("data-openapi-url"),
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      // "Try it out" runs with this login's cookie: state-changing calls need its CSRF token.
      requestInterceptor: function (req) {
        req.headers["X-CSRF-Token"] = csrf;
        return req;
      }
    });
  });
})();
