//! The hub's HTTP API: upstream EMCO's `/v2` REST API on one port, plus `/healthz`,
//! `/v2/openapi.json` and the EMCO-rs schema-registration extension.
//!
//! Routes come from one table ([`route_table`]): the router and the OpenAPI document are both
//! built from it.

pub mod agent;
pub mod body;
pub mod error;
pub mod lifecycle;
pub mod openapi;
pub mod resources;
pub mod schema_api;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use emco_core::kinds::{BodyFormat, REST_KINDS};
use emco_core::lifecycle::{Action, CloudAction};
use emco_helm::archive::ArchiveLimits;
use emco_store::repository::Repository;

/// Largest request body accepted (a chart archive plus its metadata), in bytes.
pub const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub repo: Arc<Repository>,
    pub archive_limits: Arc<ArchiveLimits>,
    /// The deploy path (instantiate, terminate, stop, status); `None` in a hub started without
    /// one (then those actions answer 503).
    pub deployer: Option<Arc<emco_deploy::Deployer>>,
    /// The hub's secret key (the deployer's too), sealing cluster sync objects' secrets before
    /// they are stored; `None` stores them as given (answers redact them either way).
    pub sealer: Option<Arc<emco_store::seal::Sealer>>,
}

impl AppState {
    pub fn new(repo: Arc<Repository>) -> Self {
        Self {
            repo,
            archive_limits: Arc::new(ArchiveLimits::default()),
            deployer: None,
            sealer: None,
        }
    }

    pub fn with_deployer(mut self, deployer: Arc<emco_deploy::Deployer>) -> Self {
        self.deployer = Some(deployer);
        self
    }

    pub fn with_sealer(mut self, sealer: Arc<emco_store::seal::Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }
}

/// One documented route.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    pub method: &'static str,
    /// Full path, with `{param}` placeholders.
    pub path: String,
    pub operation_id: String,
    pub summary: String,
    pub tag: String,
    pub query: Vec<&'static str>,
    /// Accepted request content types, when the route takes a body.
    pub body: Option<Vec<&'static str>>,
    pub responses: Vec<(u16, &'static str)>,
}

fn doc(method: &'static str, path: String, id: String, summary: String, tag: &str) -> RouteDoc {
    RouteDoc {
        method,
        path,
        operation_id: id,
        summary,
        tag: tag.to_owned(),
        query: vec![],
        body: None,
        responses: vec![],
    }
}

const DIG_PATH: &str = "/v2/projects/{project}/composite-apps/{compositeApp}/{compositeAppVersion}/deployment-intent-groups/{deploymentIntentGroup}";
const LC_PATH: &str = "/v2/projects/{project}/logical-clouds/{logicalCloud}";

const DIG_ACTIONS: &[(&str, Action)] = &[
    ("approve", Action::Approve),
    ("instantiate", Action::Instantiate),
    ("terminate", Action::Terminate),
    ("stop", Action::Stop),
    ("update", Action::Update),
    ("rollback", Action::Rollback),
    ("migrate", Action::Migrate),
];
const CLUSTER_PATH: &str = "/v2/cluster-providers/{clusterProvider}/clusters/{cluster}";
/// Network (ncm) actions on one cluster.
const CLUSTER_ACTIONS: &[&str] = &["apply", "terminate", "stop"];

/// Actions routed to [`lifecycle::unavailable_action`]: (item path, kind, actions, what is missing).
const UNAVAILABLE: &[(&str, &str, &[&str], &str)] = &[(
    CLUSTER_PATH,
    "cluster",
    CLUSTER_ACTIONS,
    "network deployment (ncm)",
)];

/// Every route the hub serves.
pub fn route_table() -> Vec<RouteDoc> {
    let mut out = vec![
        RouteDoc {
            responses: vec![(200, "ready")],
            ..doc(
                "GET",
                "/healthz".into(),
                "healthz".into(),
                "Readiness".into(),
                "hub",
            )
        },
        RouteDoc {
            responses: vec![(200, "the OpenAPI document")],
            ..doc(
                "GET",
                "/v2/openapi.json".into(),
                "openapi".into(),
                "This document".into(),
                "hub",
            )
        },
    ];
    for kind in REST_KINDS {
        let collection = format!("/v2/{}", kind.collection);
        let item = format!("/v2/{}", kind.item_path());
        let tag = kind.name;
        let content: Vec<&'static str> = match kind.body {
            BodyFormat::Json => vec!["application/json"],
            BodyFormat::Multipart { .. } => vec!["multipart/form-data", "application/json"],
        };
        let write_responses = vec![
            (400, "invalid body"),
            (404, "parent not found"),
            (409, "conflict"),
            (422, "malformed body"),
        ];
        let mut create = doc(
            "POST",
            collection.clone(),
            format!("create_{tag}"),
            format!("Create a {tag}"),
            tag,
        );
        create.body = Some(content.clone());
        create.responses = [vec![(201, "created")], write_responses.clone()].concat();
        let mut list = doc(
            "GET",
            collection.clone(),
            format!("list_{tag}"),
            format!("List {tag} resources"),
            tag,
        );
        list.query = list_queries(kind.name);
        list.responses = vec![(200, "the list"), (404, "parent not found")];
        let mut get_one = doc(
            "GET",
            item.clone(),
            format!("get_{tag}"),
            format!("Get a {tag}"),
            tag,
        );
        get_one.responses = vec![(200, "the resource"), (404, "not found")];
        if matches!(kind.name, "clusterKv" | "clusterSyncObject") {
            get_one.query = vec!["key"];
        }
        let mut put = doc(
            "PUT",
            item.clone(),
            format!("update_{tag}"),
            format!("Create or replace a {tag}"),
            tag,
        );
        put.body = Some(content);
        put.responses = [vec![(200, "updated"), (201, "created")], write_responses].concat();
        let mut delete = doc(
            "DELETE",
            item.clone(),
            format!("delete_{tag}"),
            format!("Delete a {tag}"),
            tag,
        );
        delete.responses = vec![
            (204, "deleted"),
            (404, "not found"),
            (409, "children or referrers exist"),
        ];
        out.extend([create, list, get_one, put, delete]);
        if kind.delete_collection {
            let mut all = doc(
                "DELETE",
                collection,
                format!("delete_all_{tag}"),
                format!("Delete every {tag} of the parent"),
                tag,
            );
            all.responses = vec![
                (204, "deleted"),
                (404, "parent not found"),
                (409, "children or referrers exist"),
            ];
            out.push(all);
        }
    }
    for (action, _) in DIG_ACTIONS {
        let mut d = doc(
            "POST",
            format!("{DIG_PATH}/{action}"),
            format!("{action}_deploymentIntentGroup"),
            format!("{action} a deployment intent group"),
            "lifecycle",
        );
        d.responses = vec![
            (202, "accepted"),
            (400, "bad request body"),
            (404, "not found"),
            (409, "not allowed in the current state"),
        ];
        out.push(d);
    }
    let mut status = doc(
        "GET",
        format!("{DIG_PATH}/status"),
        "status_deploymentIntentGroup".into(),
        "Status of a deployment intent group".into(),
        "lifecycle",
    );
    status.query = vec![
        "instance",
        "type",
        "output",
        "app",
        "cluster",
        "resource",
        "apps",
        "clusters",
        "resources",
        "status",
    ];
    status.responses = vec![(200, "status"), (404, "not found")];
    out.push(status);
    for action in ["instantiate", "terminate"] {
        let mut d = doc(
            "POST",
            format!("{LC_PATH}/{action}"),
            format!("{action}_logicalCloud"),
            format!("{action} a logical cloud"),
            "lifecycle",
        );
        d.responses = vec![
            (202, "accepted"),
            (
                400,
                "no cluster references, or no namespace or user (standard/privileged)",
            ),
            (404, "not found"),
            (409, "not allowed in the current state"),
        ];
        out.push(d);
    }
    let mut kubeconfig = doc(
        "GET",
        format!("{LC_PATH}/cluster-references/{{clusterReference}}/kubeconfig"),
        "kubeconfig_clusterReference".into(),
        "The logical cloud user's kubeconfig for one of its clusters".into(),
        "lifecycle",
    );
    kubeconfig.responses = vec![
        (200, "the kubeconfig (YAML)"),
        (400, "an admin cloud"),
        (404, "not found"),
        (
            409,
            "not instantiated, or the certificate is not signed yet",
        ),
    ];
    out.push(kubeconfig);
    let mut update = doc(
        "POST",
        format!("{LC_PATH}/update"),
        "update_logicalCloud".into(),
        "Bring an instantiated logical cloud's clusters in line with its references, permissions and quotas".into(),
        "lifecycle",
    );
    update.responses = vec![
        (202, "accepted"),
        (400, "no cluster references"),
        (404, "not found"),
        (409, "not instantiated"),
    ];
    out.push(update);
    let mut stop = doc(
        "POST",
        format!("{LC_PATH}/stop"),
        "stop_logicalCloud".into(),
        "End the retries of a logical cloud's running instantiate, update or terminate".into(),
        "lifecycle",
    );
    stop.responses = vec![
        (202, "accepted"),
        (404, "not found"),
        (409, "nothing running"),
    ];
    out.push(stop);
    let mut lc_status = doc(
        "GET",
        format!("{LC_PATH}/status"),
        "status_logicalCloud".into(),
        "Status of a logical cloud".into(),
        "lifecycle",
    );
    lc_status.responses = vec![(200, "status"), (404, "not found")];
    out.push(lc_status);
    for action in CLUSTER_ACTIONS {
        let mut d = doc(
            "POST",
            format!("{CLUSTER_PATH}/{action}"),
            format!("{action}_clusterNetworks"),
            format!("{action} the networks of a cluster"),
            "lifecycle",
        );
        d.responses = vec![(404, "not found"), (501, "not available yet")];
        out.push(d);
    }
    let schema_tag = "schema";
    let mut reg = doc(
        "POST",
        "/v2/schema/segments".into(),
        "register_schema_segment".into(),
        "Register a controller's referential schema segment".into(),
        schema_tag,
    );
    reg.body = Some(vec!["application/json"]);
    reg.responses = vec![
        (201, "registered"),
        (200, "identical segment already registered"),
        (400, "inconsistent schema"),
        (409, "name taken"),
    ];
    let mut segs = doc(
        "GET",
        "/v2/schema/segments".into(),
        "list_schema_segments".into(),
        "List schema segments".into(),
        schema_tag,
    );
    segs.responses = vec![(200, "segments")];
    let mut seg = doc(
        "GET",
        "/v2/schema/segments/{segment}".into(),
        "get_schema_segment".into(),
        "Get a schema segment".into(),
        schema_tag,
    );
    seg.responses = vec![(200, "segment"), (404, "not found")];
    let mut unreg = doc(
        "DELETE",
        "/v2/schema/segments/{segment}".into(),
        "unregister_schema_segment".into(),
        "Remove a schema segment".into(),
        schema_tag,
    );
    unreg.responses = vec![
        (204, "removed"),
        (404, "not found"),
        (409, "resources of the segment exist"),
    ];
    out.extend([reg, segs, seg, unreg]);
    for method in ["GET", "POST", "PUT", "DELETE"] {
        let mut d = doc(
            method,
            "/v2/resources/{kind}/{rest}".into(),
            format!("{}_registered_resource", method.to_lowercase()),
            format!(
                "{method} a resource of a registered kind ({{rest}} = its key values joined by /)"
            ),
            schema_tag,
        );
        if method == "POST" || method == "PUT" {
            d.body = Some(vec!["application/json"]);
        }
        d.responses = vec![
            (200, "ok"),
            (201, "created"),
            (204, "deleted"),
            (404, "not found"),
            (409, "integrity"),
        ];
        out.push(d);
    }
    out
}

fn list_queries(kind: &str) -> Vec<&'static str> {
    match kind {
        "cluster" => vec!["label", "withLabels"],
        "genericAppPlacementIntent" | "appProfile" => vec!["app"],
        "groupIntent" | "hpaIntent" => vec!["intent"],
        "hpaConsumer" => vec!["consumer"],
        "hpaResource" => vec!["resource"],
        _ => vec![],
    }
}

/// The `/v2` router and friends, with every route of [`route_table`].
pub fn router(state: AppState, max_body: usize) -> Router {
    let mut router: Router<AppState> = Router::new();
    for kind in REST_KINDS {
        let (collection, item) = resources::routes(kind);
        router = router
            .route(&format!("/v2/{}", kind.collection), collection)
            .route(&format!("/v2/{}", kind.item_path()), item);
    }
    for (action, dig_action) in DIG_ACTIONS {
        let path = format!("{DIG_PATH}/{action}");
        router = match *dig_action {
            Action::Approve => router.route(&path, post(lifecycle::approve)),
            a => router.route(
                &path,
                post(
                    move |State(s): State<AppState>,
                          Path(p): resources::PathParams,
                          headers: axum::http::HeaderMap,
                          body: bytes::Bytes| async move {
                        lifecycle::deploy_action(s, p, a, headers, body).await
                    },
                ),
            ),
        };
    }
    router = router.route(&format!("{DIG_PATH}/status"), get(lifecycle::status));
    for (name, action) in [
        ("instantiate", CloudAction::Instantiate),
        ("terminate", CloudAction::Terminate),
    ] {
        router = router.route(
            &format!("{LC_PATH}/{name}"),
            post(
                move |State(s): State<AppState>, Path(p): resources::PathParams| async move {
                    lifecycle::cloud_action(s, p, action).await
                },
            ),
        );
    }
    router = router.route(&format!("{LC_PATH}/status"), get(lifecycle::cloud_status));
    router = router.route(&format!("{LC_PATH}/update"), post(lifecycle::cloud_update));
    router = router.route(&format!("{LC_PATH}/stop"), post(lifecycle::cloud_stop));
    router = router.route(
        &format!("{LC_PATH}/cluster-references/{{clusterReference}}/kubeconfig"),
        get(lifecycle::cloud_kubeconfig),
    );
    for (path, kind, actions, what) in UNAVAILABLE {
        for action in *actions {
            let (kind, action, what): (&'static str, &'static str, &'static str) =
                (kind, action, what);
            router = router.route(
                &format!("{path}/{action}"),
                post(
                    move |State(s): State<AppState>, Path(p): resources::PathParams| async move {
                        lifecycle::unavailable_action(s, kind, p, action, what).await
                    },
                ),
            );
        }
    }
    router = router
        .route(agent::PATH, axum::routing::put(agent::put).get(agent::get))
        .route(
            "/v2/schema/segments",
            post(schema_api::register).get(schema_api::list),
        )
        .route(
            "/v2/schema/segments/{name}",
            get(schema_api::get).delete(schema_api::unregister),
        )
        .route(
            "/v2/resources/{kind}",
            get(schema_api::generic_get).post(schema_api::generic_post),
        )
        .route(
            "/v2/resources/{kind}/{*rest}",
            get(schema_api::generic_get)
                .post(schema_api::generic_post)
                .put(schema_api::generic_put)
                .delete(schema_api::generic_delete),
        );
    let openapi = Arc::new(openapi::document(&route_table()));
    router
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/v2/openapi.json",
            get(move || async move { axum::Json(openapi.as_ref().clone()) }),
        )
        // Upstream's router answers unknown paths with Go's text; scripts match on it.
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}
