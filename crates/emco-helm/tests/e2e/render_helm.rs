//! Rendering with the real `helm template` (Helm 3.17.1, installed by `scripts/ensure-deps.sh`):
//! upstream EMCO's example charts and profiles, override values, profile config resources, hooks,
//! CRD scopes, Helm's error messages, and the renderer's time and output bounds.
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use emco_helm::archive::{ArchiveLimits, Chart, Profile, read_chart, read_profile};
use emco_helm::render::HELM_BIN_ENV;
use emco_helm::{
    HelmConfig, HelmRenderer, HookDeletePolicy, HookEvent, Release, RenderError, RenderRequest,
    Renderer, find_helm,
};
use serde_json::json;

/// `EMCO_HELM_BIN`, else `helm` on `PATH`, else the copy `scripts/ensure-deps.sh` installs.
fn helm_bin() -> PathBuf {
    let pinned = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/helm");
    find_helm()
        .or_else(|| pinned.is_file().then_some(pinned))
        .unwrap_or_else(|| {
            panic!(
                "helm not found: set {HELM_BIN_ENV}, put helm on PATH, or run \
                 `bash scripts/ensure-deps.sh` to install the pinned Helm 3.17.1 into .tools/bin"
            )
        })
}

fn renderer() -> HelmRenderer {
    HelmRenderer::new(HelmConfig::new(helm_bin()))
}

/// Upstream's example tarballs, read in place (never copied into the repository).
fn tarball(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/emco-reference/generated-from-jacobtrvl-emco/tarballs")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn upstream_chart(name: &str) -> Chart {
    read_chart(&tarball(name), &ArchiveLimits::default()).unwrap()
}

fn upstream_profile(name: &str) -> Profile {
    read_profile(&tarball(name), &ArchiveLimits::default()).unwrap()
}

/// A `.tar.gz` holding `files`, as `tar -czf` would make it.
fn tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, contents.as_bytes())
            .unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&tar).unwrap();
    gzip.finish().unwrap()
}

fn chart_from(files: &[(&str, &str)]) -> Chart {
    read_chart(&tar_gz(files), &ArchiveLimits::default()).unwrap()
}

fn profile_from(files: &[(&str, &str)]) -> Profile {
    read_profile(&tar_gz(files), &ArchiveLimits::default()).unwrap()
}

fn request<'a>(
    chart: &'a Chart,
    profile: Option<&'a Profile>,
    override_values: &'a [(String, String)],
) -> RenderRequest<'a> {
    RenderRequest {
        chart,
        profile,
        release_name: "r1",
        namespace: "ns1",
        override_values,
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn object<'a>(release: &'a Release, kind: &str, name: &str) -> &'a emco_helm::RenderedObject {
    release
        .objects()
        .find(|object| object.kind == kind && object.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:#?}", summary(release)))
}

fn summary(release: &Release) -> Vec<String> {
    release
        .objects()
        .map(|object| format!("{} {}", object.kind, object.name))
        .collect()
}

fn kinds(objects: &[emco_helm::RenderedObject]) -> Vec<&str> {
    objects.iter().map(|object| object.kind.as_str()).collect()
}

#[tokio::test]
async fn helm_is_available_and_is_helm_3() {
    let version = renderer().version().await.unwrap();
    assert!(
        version.starts_with("v3."),
        "unexpected helm version {version}"
    );
}

#[tokio::test]
async fn collectd_with_its_profile_renders_in_release_and_namespace() {
    let chart = upstream_chart("collectd.tar.gz");
    let profile = upstream_profile("collectd_profile.tar.gz");
    let release = renderer()
        .render_release(&request(&chart, Some(&profile), &[]))
        .await
        .unwrap();
    assert_eq!(
        (release.name.as_str(), release.namespace.as_str()),
        ("r1", "ns1")
    );
    assert!(release.crds.is_empty() && release.hooks.is_empty());
    assert_eq!(
        kinds(&release.resources),
        ["ConfigMap", "Service", "DaemonSet"]
    );
    for resource in &release.resources {
        assert_eq!(resource.namespace.as_deref(), Some("ns1"));
        assert_eq!(resource.object["metadata"]["namespace"], "ns1");
        assert!(
            resource
                .source
                .as_deref()
                .unwrap()
                .starts_with("collectd/templates/")
        );
    }
    // The release name reaches the templates.
    let config = object(&release, "ConfigMap", "r1-collectd-config");
    assert_eq!(config.object["metadata"]["labels"]["release"], "r1");
    assert!(
        config.object["data"]["collectd.conf"]
            .as_str()
            .unwrap()
            .contains("LoadPlugin cpu")
    );
    // The profile's override values beat the chart's values.yaml (port 9103 -> 9104).
    let service = object(&release, "Service", "collectd");
    assert_eq!(service.object["spec"]["ports"][0]["port"], 9104);
    assert_eq!(service.object["spec"]["ports"][0]["targetPort"], 9103);
    assert_eq!(
        object(&release, "DaemonSet", "r1-collectd").upstream_key(),
        "r1-collectd+DaemonSet"
    );
}

#[tokio::test]
async fn monitor_with_an_empty_override_file_has_its_crd_and_cluster_scoped_rbac() {
    let chart = upstream_chart("monitor.tar.gz");
    let profile = upstream_profile("monitor_profile.tar.gz");
    let release = renderer()
        .render_release(&request(&chart, Some(&profile), &[]))
        .await
        .unwrap();
    assert_eq!(release.object_count(), 6);
    assert_eq!(kinds(&release.crds), ["CustomResourceDefinition"]);
    assert!(!release.crds[0].from_crds_dir());
    assert_eq!(
        kinds(&release.resources),
        [
            "ServiceAccount",
            "ConfigMap",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment"
        ]
    );
    assert_eq!(object(&release, "ClusterRole", "monitor").namespace, None);
    assert_eq!(
        object(&release, "ClusterRoleBinding", "monitor").namespace,
        None
    );
    assert_eq!(
        object(&release, "Deployment", "r1-monitor")
            .namespace
            .as_deref(),
        Some("ns1")
    );
    // The binding's subject names the release namespace, rendered by the chart itself.
    let binding = object(&release, "ClusterRoleBinding", "monitor");
    assert_eq!(binding.object["subjects"][0]["namespace"], "ns1");
    // Uninstall deletes the template CRD too, after the workloads and RBAC.
    let uninstall: Vec<_> = release
        .uninstall_order()
        .into_iter()
        .map(|object| object.kind.as_str())
        .collect();
    assert_eq!(
        uninstall,
        [
            "Deployment",
            "ClusterRoleBinding",
            "ClusterRole",
            "CustomResourceDefinition",
            "ConfigMap",
            "ServiceAccount"
        ]
    );
}

#[tokio::test]
async fn http_server_profile_and_group_overrides_layer_in_upstream_order() {
    let chart = upstream_chart("http-server.tar.gz");
    let profile = upstream_profile("http-server-profile.tar.gz");
    let service_type = |release: &Release| {
        object(release, "Service", "http-service").object["spec"]["type"].clone()
    };

    // Chart values alone.
    let plain = renderer()
        .render_release(&request(&chart, None, &[]))
        .await
        .unwrap();
    assert_eq!(plain.object_count(), 3);
    // The profile's override file.
    let profiled = renderer()
        .render_release(&request(&chart, Some(&profile), &[]))
        .await
        .unwrap();
    assert_eq!(service_type(&profiled), "NodePort");
    // The group's overrideValues win over both; dotted keys and typed `--set` values, like
    // upstream's `--set key=value` strings.
    let overrides = pairs(&[("service.type", "LoadBalancer"), ("replicaCount", "3")]);
    let overridden = renderer()
        .render_release(&request(&chart, Some(&profile), &overrides))
        .await
        .unwrap();
    assert_eq!(service_type(&overridden), "LoadBalancer");
    let deployment = object(&overridden, "Deployment", "r1-http-server");
    assert_eq!(deployment.object["spec"]["replicas"], 3);
    // Later overrides win on conflicts.
    let conflicting = pairs(&[
        ("service.type", "LoadBalancer"),
        ("service.type", "ClusterIP"),
    ]);
    let last = renderer()
        .render_release(&request(&chart, Some(&profile), &conflicting))
        .await
        .unwrap();
    assert_eq!(service_type(&last), "ClusterIP");
}

#[tokio::test]
async fn operator_chart_directory_and_chart_name_differ() {
    let chart = upstream_chart("operator.tar.gz");
    assert_eq!(
        (chart.root_dir.as_str(), chart.name.as_str()),
        ("operator", "m3db-operator")
    );
    let profile = upstream_profile("operator_profile.tar.gz");
    let release = renderer()
        .render_release(&request(&chart, Some(&profile), &[]))
        .await
        .unwrap();
    assert_eq!(release.object_count(), 8);
    assert_eq!(release.crds.len(), 1);
    assert_eq!(
        kinds(&release.resources),
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Service",
            "Service",
            "StatefulSet",
            "StatefulSet"
        ]
    );
    // Helm names sources after Chart.yaml's name, not the directory.
    assert!(release.objects().all(|object| {
        object
            .source
            .as_deref()
            .unwrap()
            .starts_with("m3db-operator/templates/")
    }));
    assert_eq!(
        object(&release, "StatefulSet", "m3db-operator")
            .namespace
            .as_deref(),
        Some("ns1")
    );
}

#[tokio::test]
async fn profile_config_resources_replace_and_add_chart_files() {
    let chart = upstream_chart("collectd.tar.gz");
    let profile = profile_from(&[
        (
            "manifest.yaml",
            "version: v1\ntype:\n  values: override_values.yaml\n  configresource:\n    \
             - filepath: custom.conf\n      chartpath: collectd/resources/collectd.conf\n    \
             - filepath: extra/more.conf\n      chartpath: collectd/resources/extra.conf\n",
        ),
        ("override_values.yaml", ""),
        ("custom.conf", "LoadPlugin custom_{{ .Release.Name }}\n"),
        ("extra/more.conf", "Interval 7\n"),
    ]);
    let release = renderer()
        .render_release(&request(&chart, Some(&profile), &[]))
        .await
        .unwrap();
    let data = &object(&release, "ConfigMap", "r1-collectd-config").object["data"];
    // The replaced file is what the chart reads (through `tpl`, so templates in it render).
    assert_eq!(data["collectd.conf"], "LoadPlugin custom_r1\n");
    assert_eq!(data["extra.conf"], "Interval 7\n");
}

#[tokio::test]
async fn config_resource_into_a_missing_directory_fails_like_upstream() {
    let chart = upstream_chart("collectd.tar.gz");
    let profile = profile_from(&[
        (
            "manifest.yaml",
            "version: v1\ntype:\n  values: values.yaml\n  configresource:\n    \
             - filepath: p1.yaml\n      chartpath: collectd/folderdoesNOTexist/p1.yaml\n",
        ),
        ("values.yaml", ""),
        ("p1.yaml", "x: 1\n"),
    ]);
    let error = renderer()
        .render(&request(&chart, Some(&profile), &[]))
        .await
        .unwrap_err();
    match error {
        RenderError::ConfigResource {
            chart_path, reason, ..
        } => {
            assert_eq!(chart_path, "collectd/folderdoesNOTexist/p1.yaml");
            assert!(reason.contains("does not exist"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

const HOOKED_CHART: &[(&str, &str)] = &[
    (
        "hooked/Chart.yaml",
        "apiVersion: v2\nname: hooked\nversion: 0.1.0\n",
    ),
    ("hooked/values.yaml", "greeting: hello\n"),
    (
        "hooked/crds/widgets.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         metadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Cluster\n  \
         names: {kind: Widget, plural: widgets}\n  versions: [{name: v1, served: true, storage: true}]\n\
         ---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         metadata:\n  name: gadgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  \
         names: {kind: Gadget, plural: gadgets}\n  versions: [{name: v1, served: true, storage: true}]\n",
    ),
    (
        "hooked/templates/hooks.yaml",
        r#"{{- range $index, $weight := list 5 -3 5 0 }}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $.Release.Name }}-pre-{{ $index }}
  annotations:
    "helm.sh/hook": pre-install
    "helm.sh/hook-weight": "{{ $weight }}"
    "helm.sh/hook-delete-policy": before-hook-creation,hook-succeeded
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: step, image: busybox}]
{{- end }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-pre-config
  annotations:
    "helm.sh/hook": pre-install
    "helm.sh/hook-weight": "5"
data: {a: b}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-cleanup
  annotations:
    "helm.sh/hook": pre-delete,post-install
    "helm.sh/hook-delete-policy": hook-failed
spec: {}
---
apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-test
  annotations:
    "helm.sh/hook": test
spec:
  containers: [{name: t, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-unknown
  annotations:
    "helm.sh/hook": pre-install,bogus
spec:
  containers: [{name: t, image: busybox}]
"#,
    ),
    (
        "hooked/templates/main.yaml",
        r#"apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
---
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: g1
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
data:
  greeting: {{ .Values.greeting | quote }}
  namespace: {{ .Release.Namespace | quote }}
  kube: {{ .Capabilities.KubeVersion.Version | quote }}
---
# nothing here but a comment
"#,
    ),
];

#[tokio::test]
async fn hooks_crds_and_scopes_are_classified() {
    let chart = chart_from(HOOKED_CHART);
    let release = renderer()
        .render_release(&request(&chart, None, &[]))
        .await
        .unwrap();
    // CRDs from crds/ come first and are marked as such.
    let crd_names: Vec<_> = release.crds.iter().map(|crd| crd.name.as_str()).collect();
    assert_eq!(crd_names, ["widgets.example.com", "gadgets.example.com"]);
    assert!(release.crds.iter().all(|crd| crd.from_crds_dir()));
    // Ordinary resources: the comment-only document is gone.
    assert_eq!(kinds(&release.resources), ["ConfigMap", "Gadget", "Widget"]);
    // The CRD in the same render says Widget is cluster-scoped and Gadget namespaced.
    assert_eq!(object(&release, "Widget", "w1").namespace, None);
    assert_eq!(
        object(&release, "Gadget", "g1").namespace.as_deref(),
        Some("ns1")
    );
    let config = object(&release, "ConfigMap", "r1-cm");
    assert_eq!(config.object["data"]["namespace"], "ns1");
    assert_eq!(config.object["data"]["kube"], "v1.32.0");
    // Hooks: the test-only hook and the unknown-event object are gone.
    assert_eq!(release.hooks.len(), 6);
    let pre_install: Vec<_> = release
        .hooks_for(HookEvent::PreInstall)
        .into_iter()
        .map(|hook| (hook.object.name.as_str(), hook.spec.weight))
        .collect();
    assert_eq!(
        pre_install,
        [
            ("r1-pre-1", -3),
            ("r1-pre-3", 0),
            // Equal weights run by name, whatever their kind.
            ("r1-pre-0", 5),
            ("r1-pre-2", 5),
            ("r1-pre-config", 5),
        ]
    );
    let cleanup = release.hooks_for(HookEvent::PreDelete);
    assert_eq!(cleanup.len(), 1);
    assert_eq!(cleanup[0].object.name, "r1-cleanup");
    assert_eq!(
        cleanup[0].spec.events,
        [HookEvent::PreDelete, HookEvent::PostInstall]
    );
    assert_eq!(
        cleanup[0].spec.delete_policies,
        [HookDeletePolicy::HookFailed]
    );
    assert_eq!(release.hooks_for(HookEvent::PostInstall).len(), 1);
    let job = release.hooks_for(HookEvent::PreInstall)[0];
    assert_eq!(
        job.spec.effective_delete_policies(),
        [
            HookDeletePolicy::BeforeHookCreation,
            HookDeletePolicy::HookSucceeded
        ]
    );
    let config_hook = release.hooks_for(HookEvent::PreInstall)[4];
    assert_eq!(
        config_hook.spec.effective_delete_policies(),
        [HookDeletePolicy::BeforeHookCreation]
    );
    assert_eq!(config_hook.object.namespace.as_deref(), Some("ns1"));
    assert!(release.hooks_for(HookEvent::Test).is_empty());
}

#[tokio::test]
async fn kube_version_can_be_pinned() {
    let chart = chart_from(HOOKED_CHART);
    let mut config = HelmConfig::new(helm_bin());
    config.kube_version = Some("1.29.4".to_owned());
    let release = HelmRenderer::new(config)
        .render_release(&request(&chart, None, &[]))
        .await
        .unwrap();
    assert_eq!(
        object(&release, "ConfigMap", "r1-cm").object["data"]["kube"],
        "v1.29.4"
    );
}

#[tokio::test]
async fn a_template_error_returns_helms_own_message() {
    let chart = chart_from(&[
        (
            "broken/Chart.yaml",
            "apiVersion: v2\nname: broken\nversion: 0.1.0\n",
        ),
        (
            "broken/templates/bad.yaml",
            "value: {{ .Values.nope.deeper }}\n",
        ),
    ]);
    match renderer()
        .render(&request(&chart, None, &[]))
        .await
        .unwrap_err()
    {
        RenderError::Helm { message, exit_code } => {
            assert_eq!(exit_code, Some(1));
            assert_eq!(
                message,
                "template: broken/templates/bad.yaml:1:17: executing \"broken/templates/bad.yaml\" \
                 at <.Values.nope.deeper>: nil pointer evaluating interface {}.deeper"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn override_syntax_errors_are_helms_as_upstream_gets_them() {
    let chart = upstream_chart("http-server.tar.gz");
    // Upstream joins key and value with `=` and hands them to Helm's `--set` parser, so an
    // unescaped comma in a value fails the same way.
    let overrides = pairs(&[("service.type", "a,b")]);
    match renderer()
        .render(&request(&chart, None, &overrides))
        .await
        .unwrap_err()
    {
        RenderError::Helm { message, .. } => {
            assert_eq!(message, "failed parsing --set data: key \"b\" has no value");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Escaped, it is a plain comma.
    let escaped = pairs(&[("podAnnotations.note", "a\\,b")]);
    renderer()
        .render(&request(&chart, None, &escaped))
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_profile_values_fail_with_helms_message() {
    let chart = upstream_chart("http-server.tar.gz");
    let profile = profile_from(&[
        (
            "manifest.yaml",
            "version: v1\ntype:\n  values: override_values.yaml\n",
        ),
        ("override_values.yaml", "service: [unclosed\n"),
    ]);
    match renderer()
        .render(&request(&chart, Some(&profile), &[]))
        .await
        .unwrap_err()
    {
        RenderError::Helm { message, .. } => {
            assert!(
                message.starts_with("failed to parse profile/override_values.yaml:"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_profile_values_file_with_a_comma_in_its_name_is_still_read_whole() {
    let chart = upstream_chart("http-server.tar.gz");
    let profile = profile_from(&[
        (
            "manifest.yaml",
            "version: v1\ntype:\n  values: \"over,\\\"ride\\\".yaml\"\n",
        ),
        ("over,\"ride\".yaml", "service:\n  type: LoadBalancer\n"),
    ]);
    assert_eq!(profile.manifest.values_path, "over,\"ride\".yaml");
    let release = renderer()
        .render_release(&request(&chart, Some(&profile), &[]))
        .await
        .unwrap();
    assert_eq!(
        object(&release, "Service", "http-service").object["spec"]["type"],
        "LoadBalancer"
    );
}

#[tokio::test]
async fn every_upstream_chart_renders_with_its_profile() {
    let limits = ArchiveLimits::default();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/emco-reference/generated-from-jacobtrvl-emco/tarballs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| !name.contains("profile"))
        .collect();
    names.sort();
    let renderer = renderer();
    let mut rendered = Vec::new();
    for name in &names {
        let stem = name.trim_end_matches(".tar.gz").trim_end_matches(".tgz");
        let profile_name = [
            format!("{stem}_profile.tar.gz"),
            "profile.tar.gz".to_owned(),
        ]
        .into_iter()
        .find(|candidate| dir.join(candidate).is_file())
        .unwrap();
        let chart = read_chart(&tarball(name), &limits).unwrap();
        let profile = read_profile(&tarball(&profile_name), &limits).unwrap();
        let started = Instant::now();
        let release = renderer
            .render_release(&request(&chart, Some(&profile), &[]))
            .await
            .unwrap_or_else(|error| panic!("{name} with {profile_name}: {error}"));
        let elapsed = started.elapsed();
        assert!(release.object_count() > 0, "{name}");
        assert!(
            release.objects().all(|object| object
                .namespace
                .as_deref()
                .is_none_or(|namespace| namespace == "ns1")
                || object.object["metadata"]["namespace"].is_string()),
            "{name}"
        );
        rendered.push(format!(
            "{name}: {} objects in {elapsed:?}",
            release.object_count()
        ));
    }
    println!("{}", rendered.join("\n"));
    assert_eq!(rendered.len(), names.len());
}

#[tokio::test]
async fn renders_are_bounded_in_time_and_output() {
    let chart = upstream_chart("collectd.tar.gz");
    let mut config = HelmConfig::new(helm_bin());
    config.timeout = Duration::from_millis(1);
    let started = Instant::now();
    let error = HelmRenderer::new(config)
        .render(&request(&chart, None, &[]))
        .await
        .unwrap_err();
    assert!(matches!(error, RenderError::Timeout(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut config = HelmConfig::new(helm_bin());
    config.max_output_bytes = 100;
    let error = HelmRenderer::new(config)
        .render(&request(&chart, None, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RenderError::OutputTooLarge { limit: 100 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_missing_helm_binary_is_reported() {
    let chart = upstream_chart("collectd.tar.gz");
    let renderer = HelmRenderer::new(HelmConfig::new("/nonexistent/emco/helm"));
    let error = renderer
        .render(&request(&chart, None, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RenderError::HelmUnavailable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("/nonexistent/emco/helm"));
}

#[tokio::test]
async fn invalid_release_names_are_refused_before_helm_runs() {
    let chart = upstream_chart("collectd.tar.gz");
    // Even a missing binary is not reached: validation comes first.
    let renderer = HelmRenderer::new(HelmConfig::new("/nonexistent/emco/helm"));
    let mut bad = request(&chart, None, &[]);
    bad.release_name = "Release_1";
    let error = renderer.render(&bad).await.unwrap_err();
    assert!(
        matches!(error, RenderError::InvalidReleaseName { .. }),
        "{error:?}"
    );
}

/// The seam deploy code tests through: a renderer that returns a fixed stream.
struct FixedRenderer(&'static str);

#[async_trait::async_trait]
impl Renderer for FixedRenderer {
    async fn render(&self, _request: &RenderRequest<'_>) -> Result<String, RenderError> {
        Ok(self.0.to_owned())
    }
}

#[tokio::test]
async fn a_test_renderer_goes_through_the_same_classification() {
    let chart = chart_from(&[(
        "demo/Chart.yaml",
        "apiVersion: v2\nname: demo\nversion: 1.0.0\n",
    )]);
    let renderer: Box<dyn Renderer> = Box::new(FixedRenderer(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: web}",
    ));
    let mut request = request(&chart, None, &[]);
    request.namespace = "";
    let release = renderer.render_release(&request).await.unwrap();
    assert_eq!(release.namespace, "default");
    assert_eq!(kinds(&release.resources), ["Service", "Deployment"]);
    assert_eq!(
        serde_json::to_value(&release.resources[0].object).unwrap(),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}})
    );
}
