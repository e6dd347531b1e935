"""The admin web page's static files (HTML, script, style sheet), served by app.api.routes.admin_page."""
