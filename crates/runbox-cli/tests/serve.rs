//! `runbox serve` end to end: the real binary, spoken to over HTTP by a
//! raw client (tests/serve/http.rs), one server per test.

#[path = "serve/errors.rs"]
mod errors;
#[path = "serve/http.rs"]
mod http;
#[path = "serve/lifecycle.rs"]
mod lifecycle;
#[path = "serve/routes.rs"]
mod routes;
#[path = "serve/server.rs"]
mod server;
