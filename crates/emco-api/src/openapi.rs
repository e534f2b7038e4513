//! The OpenAPI 3 document of the hub's API, generated from the same route table that builds the
//! router (see [`crate::route_table`]), so it cannot miss a route.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Required, ResponseBuilder,
};

use crate::RouteDoc;

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

/// Builds the document.
pub fn document(routes: &[RouteDoc]) -> OpenApi {
    let mut paths = Paths::new();
    for r in routes {
        let mut op = OperationBuilder::new()
            .operation_id(Some(r.operation_id.clone()))
            .summary(Some(r.summary.clone()))
            .tag(r.tag.clone());
        for p in emco_core::kinds::placeholders(&r.path) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(p)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True),
            );
        }
        for q in &r.query {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*q)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False),
            );
        }
        if let Some(content_types) = &r.body {
            let mut body = RequestBodyBuilder::new().required(Some(Required::True));
            for ct in content_types {
                body = body.content(*ct, ContentBuilder::new().build());
            }
            op = op.request_body(Some(body.build()));
        }
        for (code, text) in &r.responses {
            op = op.response(code.to_string(), ResponseBuilder::new().description(*text));
        }
        paths.add_path_operation(&r.path, vec![method(r.method)], op.build());
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("EMCO-rs hub API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Upstream EMCO's /v2 API (unchanged) plus EMCO-rs extensions.",
                ))
                .build(),
        )
        .paths(paths)
        .build()
}
