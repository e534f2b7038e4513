//! Reads: get (and the scale view), list with selectors, pages and representations.

use super::write::scale_of;
use super::*;

pub(super) fn get(
    state: &ClusterState,
    def: &ResourceDef,
    namespace: &str,
    name: &str,
    subresource: Option<&str>,
    _params: &Params,
    _output: Output,
) -> Result<(StatusCode, Bytes), ApiError> {
    let stored = state
        .get(def, namespace, name)
        .ok_or_else(|| ApiError::not_found(def, name))?;
    if subresource == Some("scale") {
        let object = parse_stored(&stored.json)?;
        return Ok((StatusCode::OK, to_bytes(&scale_of(&object))));
    }
    Ok((StatusCode::OK, stored.json.clone()))
}

pub(super) fn encode_continue(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
        .bytes()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub(super) fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let invalid = || {
        ApiError::bad_request("continue key is not valid: the token was not issued by this server")
    };
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|index| {
            token
                .get(index..index + 2)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (namespace, name) = text.split_once('/').ok_or_else(invalid)?;
    Ok((namespace.to_owned(), name.to_owned()))
}

pub(super) fn list(
    state: &ClusterState,
    def: &ResourceDef,
    namespace: Option<&str>,
    params: &Params,
    output: Output,
) -> Result<Response, ApiError> {
    let labels = LabelSelector::parse(&params.label_selector)?;
    let fields = FieldSelector::parse(&params.field_selector)?;
    let after = params
        .continue_token
        .as_deref()
        .map(decode_continue)
        .transpose()?;
    let needs_parse =
        !labels.is_empty() || !fields.is_empty() || output != Output::Json || def.multi_version;
    let mut items: Vec<(Bytes, Option<Value>)> = Vec::new();
    let mut continue_token = None;
    let mut remaining = 0usize;
    for (key, stored) in state.list(def, namespace) {
        if after.as_ref().is_some_and(|after| key <= after) {
            continue;
        }
        let parsed = if needs_parse {
            let object = parse_stored(&stored.json)?;
            if !labels.matches_object(&object) || !fields.matches(&object) {
                continue;
            }
            Some(object)
        } else {
            None
        };
        if params.limit.is_some_and(|limit| items.len() >= limit) {
            remaining += 1;
            continue;
        }
        if params.limit.is_some_and(|limit| items.len() + 1 == limit) {
            continue_token = Some(encode_continue(&key.0, &key.1));
        }
        items.push((stored.json.clone(), parsed));
    }
    if remaining == 0 {
        continue_token = None;
    }
    let resource_version = state.resource_version().to_string();
    let mut list_metadata = json!({ "resourceVersion": resource_version });
    if let (Some(token), Some(map)) = (&continue_token, list_metadata.as_object_mut()) {
        map.insert("continue".into(), json!(token));
        map.insert("remainingItemCount".into(), json!(remaining));
    }
    match output {
        Output::Table => {
            let objects: Vec<Value> = items.into_iter().filter_map(|(_, parsed)| parsed).collect();
            let mut table = table::table(
                def,
                &objects,
                state.resource_version(),
                params.include_object,
            );
            if let Some(map) = table.as_object_mut() {
                map.insert("metadata".into(), list_metadata);
            }
            Ok(value_response(StatusCode::OK, &table))
        }
        Output::Metadata => {
            let objects: Vec<Value> = items
                .into_iter()
                .filter_map(|(_, parsed)| parsed)
                .map(|object| table::partial_metadata(&object))
                .collect();
            Ok(value_response(
                StatusCode::OK,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata, "items": objects}),
            ))
        }
        Output::Json => {
            let head = json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": list_metadata});
            let head = to_bytes(&head);
            // `{"kind":…,"metadata":{…}}` + `,"items":[…]}`: splice the stored bytes in unparsed.
            let mut body = Vec::with_capacity(
                head.len() + items.iter().map(|(json, _)| json.len() + 1).sum::<usize>() + 16,
            );
            body.extend_from_slice(&head[..head.len() - 1]);
            body.extend_from_slice(b",\"items\":[");
            for (index, (json, parsed)) in items.iter().enumerate() {
                if index > 0 {
                    body.push(b',');
                }
                if def.multi_version {
                    let mut object = parsed.clone().unwrap_or(Value::Null);
                    if let Some(map) = object.as_object_mut() {
                        map.insert("apiVersion".into(), Value::String(def.api_version()));
                    }
                    body.extend_from_slice(&to_bytes(&object));
                } else {
                    body.extend_from_slice(json);
                }
            }
            body.extend_from_slice(b"]}");
            Ok(json_response(StatusCode::OK, Bytes::from(body)))
        }
    }
}
