//! Writes: create, update (PUT), patch (JSON, merge, strategic, server-side apply), the
//! `status`, `approval`, `finalize` and `scale` subresources, and the shared tail of every
//! update (server-owned metadata, validation, generation, managed fields, finalizers).

use super::*;

pub(super) fn create(
    state: &mut ClusterState,
    write: &Write,
    mut object: Value,
    managed: Managed,
) -> Result<(StatusCode, Bytes), ApiError> {
    let def = write.def;
    check_type_meta(def, &mut object)?;
    if managed == Managed::Track {
        check_fields(write, &mut object, false)?;
    }
    let metadata = metadata_mut(&mut object)?;
    if def.namespaced {
        match metadata.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                metadata.insert(
                    "namespace".into(),
                    Value::String(write.namespace.to_owned()),
                );
            }
            Some(namespace) if namespace != write.namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            Some(_) => {}
        }
    } else {
        metadata.remove("namespace");
    }
    let has_name = metadata
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|name| !name.is_empty());
    if !has_name
        && let Some(prefix) = metadata
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|prefix| !prefix.is_empty())
    {
        let prefix: String = prefix.chars().take(58).collect();
        let mut generated = format!("{prefix}{}", meta::name_suffix());
        for _ in 0..8 {
            if state.get(def, write.namespace, &generated).is_none() {
                break;
            }
            generated = format!("{prefix}{}", meta::name_suffix());
        }
        metadata.insert("name".into(), Value::String(generated));
    }
    validate(def, &object)?;
    let name = text(&object, "/metadata/name").to_owned();
    if def.namespaced {
        check_namespace_writable(state, def, write.namespace, &name)?;
    }
    if state.get(def, write.namespace, &name).is_some() {
        return Err(ApiError::already_exists(def, &name));
    }
    let metadata = metadata_mut(&mut object)?;
    for server_owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        metadata.remove(server_owned);
    }
    metadata.insert("uid".into(), Value::String(meta::new_uid()));
    metadata.insert(
        "creationTimestamp".into(),
        Value::String(meta::now_timestamp()),
    );
    if def.generation {
        metadata.insert("generation".into(), json!(1));
    } else {
        metadata.remove("generation");
    }
    if def.status
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    controllers::admit(def, Operation::Create, &mut object, state);
    if managed == Managed::Track {
        apply::track_update(
            None,
            &mut object,
            &write
                .writer(main_scope(def))
                .with_api_version(&def.api_version()),
        );
    }
    if write.dry_run {
        return Ok((StatusCode::CREATED, to_bytes(&object)));
    }
    let json = state.commit(&def.store_key, &mut object);
    if is_crd(def)
        && let Some(key) = crd::store_key(&object)
    {
        state.set_custom_types(&key, crd::served_types(&object));
    }
    controllers::after_commit(def, EventType::Added, &object, state);
    Ok((StatusCode::CREATED, json))
}

fn scope_of(def: &ResourceDef, subresource: Option<&str>) -> Scope {
    match subresource {
        Some("status" | "approval") => Scope::Status,
        _ => main_scope(def),
    }
}

/// The new object a write to `subresource` produces from `old` and the client's `proposed`
/// object: the main resource ignores status (for kinds with a status subresource), `status`
/// changes only status, `approval` only the conditions, `finalize` only `spec.finalizers`.
fn confine(
    def: &ResourceDef,
    old: &Value,
    mut proposed: Value,
    subresource: Option<&str>,
) -> Value {
    let copy = |from: &Value, to: &mut Value, pointer: &str| {
        let (parent, field) = match pointer.rsplit_once('/') {
            Some(split) => split,
            None => return,
        };
        let value = from.pointer(pointer).cloned();
        let parent_value = if parent.is_empty() {
            Some(&mut *to)
        } else {
            to.pointer_mut(parent)
        };
        if let Some(Value::Object(map)) = parent_value {
            match value {
                Some(value) => {
                    map.insert(field.to_owned(), value);
                }
                None => {
                    map.remove(field);
                }
            }
        }
    };
    match subresource {
        None => {
            if def.status {
                copy(old, &mut proposed, "/status");
            }
            proposed
        }
        Some("status") => {
            let mut new = old.clone();
            copy(&proposed, &mut new, "/status");
            new
        }
        Some("approval") => {
            let mut new = old.clone();
            if new.get("status").is_none_or(|status| !status.is_object())
                && let Some(map) = new.as_object_mut()
            {
                map.insert("status".into(), json!({}));
            }
            copy(&proposed, &mut new, "/status/conditions");
            new
        }
        Some("finalize") => {
            let mut new = old.clone();
            copy(&proposed, &mut new, "/spec/finalizers");
            new
        }
        Some(_) => proposed,
    }
}

pub(super) fn update(
    state: &mut ClusterState,
    write: &Write,
    name: &str,
    mut body: Value,
    subresource: Option<&str>,
) -> Result<(StatusCode, Bytes), ApiError> {
    let def = write.def;
    let old_json = state
        .get(def, write.namespace, name)
        .ok_or_else(|| ApiError::not_found(def, name))?
        .json
        .clone();
    let old = parse_stored(&old_json)?;
    if subresource == Some("scale") {
        let replicas = body.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
        let requested = text(&body, "/metadata/resourceVersion").to_owned();
        return scale_write(state, write, name, old, old_json, replicas, &requested);
    }
    check_type_meta(def, &mut body)?;
    check_fields(write, &mut body, false)?;
    check_identity(def, write, name, &body)?;
    replace_checked(state, write, name, old, old_json, body, subresource)
}

/// The end of a PUT or PATCH: a resourceVersion in the proposed object must still be current
/// (409 otherwise); only the part the endpoint may change is taken; then the write is stored.
fn replace_checked(
    state: &mut ClusterState,
    write: &Write,
    name: &str,
    old: Value,
    old_json: Bytes,
    proposed: Value,
    subresource: Option<&str>,
) -> Result<(StatusCode, Bytes), ApiError> {
    let def = write.def;
    let requested = text(&proposed, "/metadata/resourceVersion");
    if !requested.is_empty() && requested != text(&old, "/metadata/resourceVersion") {
        return Err(ApiError::stale(def, name));
    }
    let new = confine(def, &old, proposed, subresource);
    finish_update(
        state,
        write,
        name,
        old,
        old_json,
        new,
        Managed::Track,
        scope_of(def, subresource),
    )
}

fn check_identity(
    def: &ResourceDef,
    write: &Write,
    name: &str,
    body: &Value,
) -> Result<(), ApiError> {
    let body_name = text(body, "/metadata/name");
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_namespace = text(body, "/metadata/namespace");
    if def.namespaced && !body_namespace.is_empty() && body_namespace != write.namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// Whether anything besides metadata and status differs.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    let ignored = |key: &String| key == "metadata" || key == "status";
    old.iter()
        .filter(|(key, _)| !ignored(key))
        .any(|(key, value)| new.get(key) != Some(value))
        || new
            .keys()
            .filter(|key| !ignored(key))
            .any(|key| !old.contains_key(key))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn finish_update(
    state: &mut ClusterState,
    write: &Write,
    name: &str,
    old: Value,
    old_json: Bytes,
    mut new: Value,
    managed: Managed,
    scope: Scope,
) -> Result<(StatusCode, Bytes), ApiError> {
    let def = write.def;
    {
        let old_metadata = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let metadata = metadata_mut(&mut new)?;
        for server_owned in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_metadata.get(server_owned) {
                Some(value) => {
                    metadata.insert(server_owned.to_owned(), value.clone());
                }
                None => {
                    metadata.remove(server_owned);
                }
            }
        }
        metadata.remove("selfLink");
        if let Some(map) = new.as_object_mut() {
            for type_field in ["apiVersion", "kind"] {
                if let Some(value) = old.get(type_field) {
                    map.insert(type_field.to_owned(), value.clone());
                }
            }
        }
    }
    validate(def, &new)?;
    if is_terminating(&old) {
        let old_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let added = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|finalizers| {
                finalizers
                    .iter()
                    .any(|finalizer| !old_finalizers.contains(finalizer))
            });
        if added {
            return Err(ApiError::invalid(
                def,
                name,
                vec![crate::error::FieldCause::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                )],
            ));
        }
    }
    if def.generation && spec_changed(&old, &new) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        metadata_mut(&mut new)?.insert("generation".into(), json!(generation));
    }
    controllers::admit(def, Operation::Update, &mut new, state);
    if managed == Managed::Track {
        let api_version = def.api_version();
        apply::track_update(
            Some(&old),
            &mut new,
            &write.writer(scope).with_api_version(&api_version),
        );
    }
    if new == old {
        return Ok((StatusCode::OK, old_json));
    }
    let finalizers_done = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if is_terminating(&new) && finalizers_done {
        if write.dry_run {
            return Ok((StatusCode::OK, to_bytes(&new)));
        }
        let json = state
            .remove(&def.store_key, write.namespace, name, &mut new)
            .ok_or_else(|| ApiError::not_found(def, name))?;
        after_removal(state, def.store_key.clone(), write.namespace, &new);
        return Ok((StatusCode::OK, json));
    }
    if write.dry_run {
        return Ok((StatusCode::OK, to_bytes(&new)));
    }
    let json = state.commit(&def.store_key, &mut new);
    if is_crd(def)
        && let Some(key) = crd::store_key(&new)
    {
        state.set_custom_types(&key, crd::served_types(&new));
    }
    controllers::after_commit(def, EventType::Modified, &new, state);
    Ok((StatusCode::OK, json))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

fn patch_kind(content_type: &str) -> Result<PatchKind, ApiError> {
    match content_type.split(';').next().unwrap_or_default().trim() {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" => Ok(PatchKind::Apply),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn patch_error(error: PatchError) -> ApiError {
    match error {
        PatchError::InvalidJsonPatch(_) | PatchError::NotAnObject { .. } => {
            ApiError::bad_request(error.to_string())
        }
        other => ApiError::unprocessable(other.to_string()),
    }
}

fn apply_patch(
    def: &ResourceDef,
    write: &Write,
    kind: PatchKind,
    target: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Json => emco_patch::json_patch(target, patch).map_err(patch_error),
        PatchKind::Merge => Ok(emco_patch::merge_patch(target, patch)),
        PatchKind::Strategic => {
            if catalog::builtin(&def.group, &def.version, &def.plural).is_none() {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json (strategic merge patch is not supported for custom resources)",
                ));
            }
            emco_patch::strategic_merge_patch(target, patch, &BuiltinSchema, &write.gvk)
                .map_err(patch_error)
        }
        PatchKind::Apply => Err(ApiError::internal("apply is not a document patch")),
    }
}

pub(super) fn patch(
    state: &mut ClusterState,
    write: &Write,
    name: &str,
    request: &ApiRequest,
    params: &Params,
    subresource: Option<&str>,
) -> Result<(StatusCode, Bytes), ApiError> {
    let def = write.def;
    let kind = patch_kind(&request.content_type)?;
    let existing = state
        .get(def, write.namespace, name)
        .map(|stored| stored.json.clone());
    if kind == PatchKind::Apply {
        return server_side_apply(state, write, name, request, params, subresource, existing);
    }
    let old_json = existing.ok_or_else(|| ApiError::not_found(def, name))?;
    let old = parse_stored(&old_json)?;
    let patch_document: Value = serde_json::from_slice(&request.body).map_err(|error| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded: {error}"
        ))
    })?;
    if subresource == Some("scale") {
        let scale = scale_of(&old);
        let patched = match kind {
            // Scale has no merge keys: a strategic merge patch of it is a merge patch.
            PatchKind::Strategic => emco_patch::merge_patch(&scale, &patch_document),
            _ => apply_patch(def, write, kind, &scale, &patch_document)?,
        };
        let replicas = patched
            .pointer("/spec/replicas")
            .cloned()
            .unwrap_or(json!(0));
        let requested = text(&patched, "/metadata/resourceVersion").to_owned();
        return scale_write(state, write, name, old, old_json, replicas, &requested);
    }
    let mut patched = apply_patch(def, write, kind, &old, &patch_document)?;
    check_fields(write, &mut patched, false)?;
    replace_checked(state, write, name, old, old_json, patched, subresource)
}

fn server_side_apply(
    state: &mut ClusterState,
    write: &Write,
    name: &str,
    request: &ApiRequest,
    params: &Params,
    subresource: Option<&str>,
    existing: Option<Bytes>,
) -> Result<(StatusCode, Bytes), ApiError> {
    let def = write.def;
    if params.field_manager.is_none() {
        return Err(ApiError::bad_request(
            "PATCH, Content-Type application/apply-patch+yaml: fieldManager must be set (is required for apply requests)",
        ));
    }
    if subresource == Some("scale") {
        return Err(ApiError::method_not_allowed());
    }
    let mut config = parse_object(&request.body, "application/yaml")?;
    check_type_meta(def, &mut config)?;
    check_fields(write, &mut config, true)?;
    check_identity(def, write, name, &config)?;
    {
        let metadata = metadata_mut(&mut config)?;
        metadata.insert("name".into(), Value::String(name.to_owned()));
        if def.namespaced {
            metadata.insert(
                "namespace".into(),
                Value::String(write.namespace.to_owned()),
            );
        }
    }
    let scope = scope_of(def, subresource);
    let api_version = def.api_version();
    let writer = write.writer(scope).with_api_version(&api_version);
    let conflict =
        |conflicts: apply::Conflicts| ApiError::apply_conflicts(&conflicts, &api_version);
    match existing {
        None => {
            if subresource.is_some() {
                return Err(ApiError::not_found(def, name));
            }
            let object = apply::apply(None, &config, &writer, params.force).map_err(conflict)?;
            create(state, write, object, Managed::Done)
        }
        Some(old_json) => {
            let old = parse_stored(&old_json)?;
            let requested = text(&config, "/metadata/resourceVersion");
            if !requested.is_empty() && requested != text(&old, "/metadata/resourceVersion") {
                return Err(ApiError::stale(def, name));
            }
            let takeover = apply::last_applied_takeover(&old, &writer);
            let merged =
                apply::apply_forgiving(Some(&old), &config, &writer, params.force, &takeover)
                    .map_err(conflict)?;
            let mut new = confine(def, &old, merged.clone(), subresource);
            // The confined object keeps the managedFields the apply computed.
            if let (Some(fields), Ok(metadata)) = (
                merged.pointer("/metadata/managedFields").cloned(),
                metadata_mut(&mut new),
            ) {
                metadata.insert("managedFields".into(), fields);
            }
            finish_update(state, write, name, old, old_json, new, Managed::Done, scope)
        }
    }
}

pub(super) fn scale_of(object: &Value) -> Value {
    let selector: Vec<String> = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut scale_metadata = Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(value) = metadata.get(field) {
            scale_metadata.insert(field.to_owned(), value.clone());
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata,
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector.join(","),
        },
    })
}

fn scale_write(
    state: &mut ClusterState,
    write: &Write,
    name: &str,
    old: Value,
    old_json: Bytes,
    replicas: Value,
    requested_version: &str,
) -> Result<(StatusCode, Bytes), ApiError> {
    let def = write.def;
    if !requested_version.is_empty() && requested_version != text(&old, "/metadata/resourceVersion")
    {
        return Err(ApiError::stale(def, name));
    }
    if !replicas.is_u64() {
        return Err(ApiError::invalid(
            def,
            name,
            vec![crate::error::FieldCause::invalid(
                "spec.replicas",
                &replicas,
                "must be greater than or equal to 0",
            )],
        ));
    }
    let mut new = old.clone();
    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("replicas".into(), replicas);
    }
    let (code, json) = finish_update(
        state,
        write,
        name,
        old,
        old_json,
        new,
        Managed::Track,
        main_scope(def),
    )?;
    let object = parse_stored(&json)?;
    Ok((code, to_bytes(&scale_of(&object))))
}
