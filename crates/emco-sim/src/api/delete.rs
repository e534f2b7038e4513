//! Deletes: one object (finalizers, preconditions, owner-reference cascades), collections,
//! namespaces (their contents first), and CRDs (their custom resources too).

use super::*;

fn delete_options(request: &ApiRequest, params: &Params) -> Result<(bool, bool, Value), ApiError> {
    let media = request
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let options: Value = if request.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else if media == proto::MEDIA_TYPE {
        decode_protobuf(&request.body)?
    } else {
        serde_json::from_slice(&request.body).map_err(|error| {
            ApiError::bad_request(format!("DeleteOptions could not be decoded: {error}"))
        })?
    };
    let policy = options
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| params.propagation_policy.clone());
    let orphan = policy.as_deref() == Some("Orphan")
        || options.get("orphanDependents").and_then(Value::as_bool) == Some(true);
    let dry_run = params.dry_run
        || options
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|modes| modes.iter().any(|mode| mode == "All"));
    Ok((orphan, dry_run, options))
}

pub(super) fn delete(
    state: &mut ClusterState,
    write: &Write,
    name: &str,
    request: &ApiRequest,
    params: &Params,
) -> Result<(StatusCode, Bytes), ApiError> {
    let def = write.def;
    let (orphan, dry_run, options) = delete_options(request, params)?;
    let stored = state
        .get(def, write.namespace, name)
        .ok_or_else(|| ApiError::not_found(def, name))?
        .json
        .clone();
    let object = parse_stored(&stored)?;
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        && uid != text(&object, "/metadata/uid")
    {
        return Err(ApiError::conflict(
            def,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                text(&object, "/metadata/uid")
            ),
        ));
    }
    if let Some(version) = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        && version != text(&object, "/metadata/resourceVersion")
    {
        return Err(ApiError::conflict(
            def,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in object meta: {}",
                text(&object, "/metadata/resourceVersion")
            ),
        ));
    }
    let is_namespace = def.group.is_empty() && def.plural == "namespaces";
    if is_namespace && ["default", "kube-system", "kube-public"].contains(&name) {
        return Err(ApiError::forbidden(
            def,
            name,
            "this namespace may not be deleted",
        ));
    }
    if dry_run {
        return Ok((StatusCode::OK, stored));
    }
    if is_namespace {
        return delete_namespace(state, name);
    }
    let json = delete_object(state, &def.store_key, write.namespace, name, orphan)
        .ok_or_else(|| ApiError::not_found(def, name))?;
    Ok((StatusCode::OK, json))
}

pub(super) fn delete_collection(
    state: &mut ClusterState,
    write: &Write,
    namespace: Option<&str>,
    request: &ApiRequest,
    params: &Params,
) -> Result<(StatusCode, Bytes), ApiError> {
    let def = write.def;
    let (orphan, dry_run, _) = delete_options(request, params)?;
    let labels = LabelSelector::parse(&params.label_selector)?;
    let fields = FieldSelector::parse(&params.field_selector)?;
    let mut doomed = Vec::new();
    for ((object_namespace, name), stored) in state.list(def, namespace) {
        let object = parse_stored(&stored.json)?;
        if labels.matches_object(&object) && fields.matches(&object) {
            doomed.push((object_namespace.clone(), name.clone(), object));
        }
    }
    let mut deleted = Vec::new();
    for (object_namespace, name, object) in doomed {
        if dry_run {
            deleted.push(object);
        } else if let Some(json) =
            delete_object(state, &def.store_key, &object_namespace, &name, orphan)
        {
            deleted.push(parse_stored(&json)?);
        }
    }
    let list = json!({
        "kind": def.list_kind(),
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": state.resource_version().to_string()},
        "items": deleted,
    });
    Ok((StatusCode::OK, to_bytes(&list)))
}

/// Deletes one object: marks it terminating while it has finalizers, otherwise removes it and
/// (unless orphaning) its dependents. Returns the object's last JSON.
fn delete_object(
    state: &mut ClusterState,
    key: &Arc<str>,
    namespace: &str,
    name: &str,
    orphan: bool,
) -> Option<Bytes> {
    let stored = state
        .objects_of_key(key)?
        .get(&(namespace.to_owned(), name.to_owned()))?
        .json
        .clone();
    let mut object: Value = serde_json::from_slice(&stored).ok()?;
    let has_finalizers = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|finalizers| !finalizers.is_empty());
    if has_finalizers {
        if is_terminating(&object) {
            return Some(stored);
        }
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("deletionTimestamp".into(), json!(meta::now_timestamp()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        return Some(state.commit(key, &mut object));
    }
    let json = state.remove(key, namespace, name, &mut object)?;
    after_removal(state, key.clone(), namespace, &object);
    if !orphan {
        let uid = text(&object, "/metadata/uid").to_owned();
        if !uid.is_empty() {
            for (dependent_key, dependent_namespace, dependent_name) in dependents_of(state, &uid) {
                delete_object(
                    state,
                    &dependent_key,
                    &dependent_namespace,
                    &dependent_name,
                    false,
                );
            }
        }
    }
    Some(json)
}

/// Objects whose ownerReferences name `uid`.
fn dependents_of(state: &ClusterState, uid: &str) -> Vec<(Arc<str>, String, String)> {
    let needle = uid.as_bytes();
    let mut found = Vec::new();
    for key in state.store_keys() {
        let Some(objects) = state.objects_of_key(&key) else {
            continue;
        };
        for ((namespace, name), stored) in objects {
            // Cheap byte search first; parse only the few objects that mention the UID.
            if !stored
                .json
                .windows(needle.len())
                .any(|window| window == needle)
            {
                continue;
            }
            let Ok(object) = serde_json::from_slice::<Value>(&stored.json) else {
                continue;
            };
            let owned = object
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|owners| {
                    owners
                        .iter()
                        .any(|owner| owner.get("uid").and_then(Value::as_str) == Some(uid))
                });
            if owned {
                found.push((key.clone(), namespace.clone(), name.clone()));
            }
        }
    }
    found
}

/// Follow-ups of a removal: a CRD takes its custom resources with it; a terminating
/// namespace that became empty goes away.
pub(super) fn after_removal(
    state: &mut ClusterState,
    key: Arc<str>,
    namespace: &str,
    object: &Value,
) {
    let crds = catalog::crds();
    if key == crds.store_key
        && let Some(custom_key) = crd::store_key(object)
    {
        state.set_custom_types(&custom_key, Vec::new());
        let names: Vec<(String, String)> = state
            .objects_of_key(&custom_key)
            .map(|objects| objects.keys().cloned().collect())
            .unwrap_or_default();
        for (custom_namespace, custom_name) in names {
            let stored = state
                .objects_of_key(&custom_key)
                .and_then(|objects| objects.get(&(custom_namespace.clone(), custom_name.clone())))
                .map(|stored| stored.json.clone());
            if let Some(mut last) =
                stored.and_then(|json| serde_json::from_slice::<Value>(&json).ok())
            {
                state.remove(&custom_key, &custom_namespace, &custom_name, &mut last);
            }
        }
    }
    if !namespace.is_empty() {
        finish_namespace_if_empty(state, namespace);
    }
    let def_for_hook = catalog::BUILTINS
        .iter()
        .chain(state.custom_types().iter())
        .find(|def| def.store_key == key)
        .cloned();
    if let Some(def) = def_for_hook {
        controllers::after_commit(&def, EventType::Deleted, object, state);
    }
}

fn finish_namespace_if_empty(state: &mut ClusterState, namespace: &str) {
    let namespaces = catalog::namespaces();
    let Some(stored) = state.get(&namespaces, "", namespace) else {
        return;
    };
    let Ok(mut object) = serde_json::from_slice::<Value>(&stored.json) else {
        return;
    };
    let held = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|finalizers| !finalizers.is_empty());
    if !is_terminating(&object) || held {
        return;
    }
    let occupied = state
        .store_keys()
        .iter()
        .filter(|key| ***key != *namespaces.store_key)
        .any(|key| {
            state.objects_of_key(key).is_some_and(|objects| {
                objects
                    .keys()
                    .any(|(object_namespace, _)| object_namespace == namespace)
            })
        });
    if !occupied {
        state.remove(&namespaces.store_key, "", namespace, &mut object);
    }
}

fn delete_namespace(state: &mut ClusterState, name: &str) -> Result<(StatusCode, Bytes), ApiError> {
    let namespaces = catalog::namespaces();
    let stored = state
        .get(&namespaces, "", name)
        .ok_or_else(|| ApiError::not_found(&namespaces, name))?
        .json
        .clone();
    let mut object = parse_stored(&stored)?;
    let json = if is_terminating(&object) {
        stored
    } else {
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("deletionTimestamp".into(), json!(meta::now_timestamp()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        if let Some(map) = object.as_object_mut() {
            map.insert("status".into(), json!({"phase": "Terminating"}));
        }
        state.commit(&namespaces.store_key, &mut object)
    };
    for key in state.store_keys() {
        if *key == *namespaces.store_key {
            continue;
        }
        let names: Vec<String> = state
            .objects_of_key(&key)
            .map(|objects| {
                objects
                    .keys()
                    .filter(|(object_namespace, _)| object_namespace == name)
                    .map(|(_, object_name)| object_name.clone())
                    .collect()
            })
            .unwrap_or_default();
        for object_name in names {
            delete_object(state, &key, name, &object_name, false);
        }
    }
    finish_namespace_if_empty(state, name);
    Ok((StatusCode::OK, json))
}
