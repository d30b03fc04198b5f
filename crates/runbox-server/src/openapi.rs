//! [`ApiDoc`]: the OpenAPI 3.1 document, generated from the handlers and
//! types (what `/openapi.json` serves and schemathesis checks).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "runbox", description = "Run commands in isolated sandboxes over HTTP. Errors are application/problem+json with a stable `code`."),
    paths(
        crate::service::healthz, crate::service::readyz, crate::service::info,
        crate::service::metrics, crate::service::openapi,
        crate::runs::create, crate::runs::list, crate::runs::get, crate::runs::cancel,
        crate::sandboxes::create, crate::sandboxes::list, crate::sandboxes::get,
        crate::sandboxes::delete, crate::sandboxes::set_ttl, crate::sandboxes::exec,
        crate::files::put, crate::files::get,
        crate::processes::start, crate::processes::get, crate::processes::wait,
        crate::processes::stop,
    ),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
