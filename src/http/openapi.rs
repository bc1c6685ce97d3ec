//! The OpenAPI 3 document, generated from the handlers' annotations and the
//! same route list the router is built from, so it cannot drift.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "agentkey",
        description = "Issues and verifies Apache Airflow agent tokens with the Astro API v1 \
                       wire contract. Every route under /v1 is also served under /iam/v1beta1; \
                       the organization, workspace and deployment routes also under \
                       /platform/v1beta1."
    ),
    components(schemas(ErrorBody, crate::http::request::FieldError)),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Adds what applies to every operation (the bearer scheme, the standard
/// error responses) once the routes are in the document.
pub fn finish(doc: &mut OpenApiDoc) {
    BearerAuth.modify(doc);
    StandardErrors.modify(doc);
    ScopeOrType.modify(doc);
}

/// `CreateApiTokenRequest` takes what the token is for as `scope` or as
/// `type` (the `/iam/v1beta1` name), exactly one of them (serde's alias
/// refuses both). The derive sees `scope` only: this adds `type` beside it
/// and says "exactly one" with a `oneOf`.
struct ScopeOrType;

impl Modify for ScopeOrType {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let Some(RefOr::T(Schema::Object(request))) =
            components.schemas.get("CreateApiTokenRequest").cloned()
        else {
            return;
        };
        let mut request = request;
        if let Some(scope) = request.properties.get("scope").cloned() {
            request.properties.insert("type".to_string(), scope);
        }
        let description = request.description.take();
        let exactly_one = OneOfBuilder::new()
            .item(ObjectBuilder::new().required("scope"))
            .item(ObjectBuilder::new().required("type"));
        components.schemas.insert(
            "CreateApiTokenRequest".to_string(),
            AllOfBuilder::new()
                .description(description)
                .item(Schema::Object(request))
                .item(exactly_one)
                .into(),
        );
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every operation may answer 400, 401, 403, 404 and 500 with an `Error`
/// body; this says so once instead of on each handler. An operation that
/// takes no credential (`security(())`: health, readiness, this document)
/// can only fail inside, with a 500.
struct StandardErrors;

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let errors = [
            (
                "400",
                "Bad request: the message and fieldErrors say what is wrong",
            ),
            ("401", "Missing, invalid, expired or revoked credential"),
            ("403", "The credential does not grant this"),
            ("404", "No such resource"),
            ("500", "Internal error"),
        ];
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let open = operation
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|r| *r == Default::default()));
                for (status, description) in errors {
                    if open && status != "500" {
                        continue;
                    }
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| {
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(description)
                                    .content(
                                        "application/json",
                                        ContentBuilder::new()
                                            .schema(Some(RefOr::Ref(
                                                utoipa::openapi::Ref::from_schema_name("ErrorBody"),
                                            )))
                                            .build(),
                                    )
                                    .build(),
                            )
                        });
                }
            }
        }
    }
}

/// The OpenAPI document of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "Meta", operation_id = "GetOpenApiDocument", security(()),
    responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi_document().as_str(),
    )
}
