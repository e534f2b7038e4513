//! The lifecycle state machine of a deployment intent group, kept beside the group (never inside
//! the user's document, which GET must return unchanged).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::key::ResourceKey;
use crate::validate::ValidationError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DigState {
    #[default]
    Created,
    Approved,
    Instantiated,
    InstantiateStopped,
    Terminated,
    TerminateStopped,
    Updated,
}

impl DigState {
    pub const ALL: [DigState; 7] = [
        DigState::Created,
        DigState::Approved,
        DigState::Instantiated,
        DigState::InstantiateStopped,
        DigState::Terminated,
        DigState::TerminateStopped,
        DigState::Updated,
    ];

    /// Whether resources are meant to be on clusters in this state (then the group cannot be
    /// deleted). A stopped terminate is not: its run finishes (leaving what it could not delete
    /// reported in status), and the group may be terminated again, instantiated or deleted.
    /// Updated is the state of a group migrated to another one: its deployment moved there.
    pub fn is_deployed(self) -> bool {
        matches!(self, DigState::Instantiated | DigState::InstantiateStopped)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Approve,
    Instantiate,
    Terminate,
    Stop,
    Update,
    Rollback,
    Migrate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action:?} a deployment intent group in state {state:?}: {hint}")]
pub struct TransitionError {
    pub action: Action,
    pub state: DigState,
    pub hint: &'static str,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub state: DigState,
    pub time: String,
    pub revision: u64,
    /// The app context the action worked on (upstream `ActionEntry.ContextId`, served as
    /// `instance`); empty for Created and Approved.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
}

/// The stored state document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigStatus {
    pub state: DigState,
    #[serde(default)]
    pub actions: Vec<ActionRecord>,
    /// Revision of the deployed context (0 before the first instantiate).
    #[serde(default)]
    pub revision: u64,
    /// Why the group cannot be deleted now (read by the repository's delete check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_blocked: Option<String>,
    /// The context that tracks status from instantiation to termination (upstream
    /// `statusctxid`): set by the first instantiate after creation or termination.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_context_id: String,
}

impl DigStatus {
    /// The app context of the most recent action that had one (the deployed revision).
    pub fn current_context(&self) -> Option<&str> {
        self.actions
            .iter()
            .rev()
            .map(|action| action.instance.as_str())
            .find(|instance| !instance.is_empty())
    }

    /// Records `context` as the instance of the action just applied; an instantiate also makes
    /// it the deployed revision `revision` and the context status is tracked in.
    pub fn set_instance(&mut self, context: &str, revision: u64) {
        if let Some(last) = self.actions.last_mut() {
            last.instance = context.to_owned();
            if last.state == DigState::Instantiated {
                last.revision = revision;
                self.revision = revision;
                self.status_context_id = context.to_owned();
            }
        }
    }

    /// Changing the group or its intents after approval: back to Created (upstream asks for a
    /// new approval). Returns whether anything changed; deployed groups keep their state (their
    /// changes take effect with an update).
    pub fn revoke_approval(&mut self, time: String) -> bool {
        if self.state != DigState::Approved {
            return false;
        }
        self.state = DigState::Created;
        self.actions.push(ActionRecord {
            state: DigState::Created,
            time,
            revision: self.revision,
            instance: String::new(),
        });
        true
    }

    /// The state `action` leads to from the current one, or why it is refused.
    pub fn next_state(&self, action: Action) -> Result<DigState, TransitionError> {
        use DigState as S;
        let refuse = |hint| {
            Err(TransitionError {
                action,
                state: self.state,
                hint,
            })
        };
        match (action, self.state) {
            (Action::Approve, S::Created | S::Terminated | S::TerminateStopped | S::Updated) => {
                Ok(S::Approved)
            }
            // Upstream's conformance corpus expects approving twice to be refused.
            (Action::Approve, S::Approved) => refuse("it is already approved"),
            (Action::Approve, _) => refuse("it is deployed; terminate it first"),
            // As upstream: a terminated group may be instantiated again without a new approval.
            (Action::Instantiate, S::Approved | S::Terminated | S::TerminateStopped) => {
                Ok(S::Instantiated)
            }
            (Action::Instantiate, S::Created | S::Updated) => refuse("approve it first"),
            (Action::Instantiate, _) => refuse("it is already instantiated"),
            // Terminating again after a stopped terminate retries what was left.
            (Action::Terminate, s) if s.is_deployed() || s == S::TerminateStopped => {
                Ok(S::Terminated)
            }
            (Action::Terminate, S::Updated) => {
                refuse("it was migrated; terminate the group it was migrated to")
            }
            (Action::Terminate, _) => refuse("it is not instantiated"),
            (Action::Stop, S::Instantiated) => Ok(S::InstantiateStopped),
            (Action::Stop, S::Terminated) => Ok(S::TerminateStopped),
            (Action::Stop, _) => refuse("no instantiate, update or terminate is in progress"),
            // As upstream: an update records the revision it leaves as Updated and the new one
            // as Instantiated, so the group stays Instantiated.
            (Action::Update | Action::Rollback, S::Instantiated | S::InstantiateStopped) => {
                Ok(S::Instantiated)
            }
            // The source of a migrate ends Updated: its deployment now belongs to the target.
            (Action::Migrate, S::Instantiated | S::InstantiateStopped) => Ok(S::Updated),
            (Action::Update | Action::Rollback | Action::Migrate, S::Updated) => {
                refuse("it was migrated to another group")
            }
            (Action::Update | Action::Rollback | Action::Migrate, _) => {
                refuse("it is not instantiated")
            }
        }
    }

    /// Moves the state machine; `time` is recorded with the new state. Update, rollback and
    /// migrate record two entries: use [`DigStatus::update_to`] and [`DigStatus::migrate_in`].
    pub fn apply(&mut self, action: Action, time: String) -> Result<(), TransitionError> {
        let next = self.next_state(action)?;
        if matches!(action, Action::Update | Action::Rollback) {
            return Err(TransitionError {
                action,
                state: self.state,
                hint: "an update needs its target revision (DigStatus::update_to)",
            });
        }
        self.push(next, time, self.revision, None);
        Ok(())
    }

    fn push(&mut self, state: DigState, time: String, revision: u64, instance: Option<&str>) {
        self.state = state;
        let instance = match (state, instance) {
            (_, Some(instance)) => instance.to_owned(),
            (DigState::Approved, None) => String::new(),
            (_, None) => self.current_context().unwrap_or_default().to_owned(),
        };
        self.actions.push(ActionRecord {
            state,
            time,
            revision,
            instance,
        });
        self.delete_blocked = state
            .is_deployed()
            .then(|| "the deployment intent group is instantiated; terminate it first".to_owned());
    }

    /// Update or rollback to the app context `target`: the revision left is recorded as
    /// Updated, `target` as the next revision, Instantiated (upstream's two entries). The
    /// status context stays (objects keep their `emco/deployment-id`). Returns the new revision.
    pub fn update_to(
        &mut self,
        action: Action,
        target: &str,
        time: String,
    ) -> Result<u64, TransitionError> {
        if !matches!(action, Action::Update | Action::Rollback) {
            return Err(TransitionError {
                action,
                state: self.state,
                hint: "not an update",
            });
        }
        let next = self.next_state(action)?;
        self.push(DigState::Updated, time.clone(), self.revision, None);
        let revision = self.revision + 1;
        self.revision = revision;
        self.push(next, time, revision, Some(target));
        Ok(revision)
    }

    /// The target of a migrate (an approved group of another version of the composite app):
    /// Instantiated with `context` as its first revision, tracking status in the source's
    /// status context.
    pub fn migrate_in(
        &mut self,
        context: &str,
        status_context: &str,
        time: String,
    ) -> Result<u64, TransitionError> {
        if self.state != DigState::Approved {
            return Err(TransitionError {
                action: Action::Migrate,
                state: self.state,
                hint: "the target of a migrate must be approved (and not instantiated)",
            });
        }
        let revision = self.revision + 1;
        self.revision = revision;
        self.status_context_id = status_context.to_owned();
        self.push(DigState::Instantiated, time, revision, Some(context));
        Ok(revision)
    }

    /// The app context of `revision`, as upstream finds it for a rollback: the first action
    /// recorded with that revision and a context.
    pub fn context_of_revision(&self, revision: u64) -> Option<&str> {
        self.actions
            .iter()
            .find(|action| action.revision == revision && !action.instance.is_empty())
            .map(|action| action.instance.as_str())
    }
}

/// The status document served at `.../status`.
pub fn status_document(key: &ResourceKey, dig: &Value, status: &DigStatus) -> Value {
    json!({
        "project": key.get("project"),
        "compositeApp": key.get("compositeApp"),
        "compositeAppVersion": key.get("compositeAppVersion"),
        "compositeProfile": dig.pointer("/spec/compositeProfile"),
        "name": key.name(),
        "states": {
            "statusctxid": status.status_context_id,
            "actions": status.actions,
        },
        "status": status.state,
        "deployedStatus": status.state,
    })
}

/// The body of `POST .../rollback` (upstream's `rollback.json`): the revision to return to.
/// Upstream's schema types `spec.revision` as a string (`"2"`); a JSON number is accepted too.
pub fn rollback_revision(body: &Value) -> Result<u64, ValidationError> {
    let invalid = |path: &str, message: &str| ValidationError {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    check_description(body)?;
    let spec = body
        .get("spec")
        .ok_or_else(|| invalid("spec", "is required"))?;
    let revision = spec
        .get("revision")
        .ok_or_else(|| invalid("spec.revision", "is required"))?;
    let parsed = match revision {
        Value::String(text) => text.trim().parse::<u64>().ok(),
        Value::Number(number) => number.as_u64(),
        _ => None,
    };
    match parsed {
        Some(revision) if revision > 0 => Ok(revision),
        _ => Err(invalid(
            "spec.revision",
            "must be a revision number of the group (1, 2, ...), as a string",
        )),
    }
}

/// The body of `POST .../migrate` (upstream's `migrate.json`): the target composite app
/// version and deployment intent group.
pub fn migrate_target(body: &Value) -> Result<(String, String), ValidationError> {
    check_description(body)?;
    let field = |name: &str| -> Result<String, ValidationError> {
        let path = format!("spec.{name}");
        let value = body
            .pointer(&format!("/spec/{name}"))
            .ok_or_else(|| ValidationError {
                path: path.clone(),
                message: "is required".into(),
            })?;
        let text = value.as_str().ok_or_else(|| ValidationError {
            path: path.clone(),
            message: "must be a string".into(),
        })?;
        crate::validate::validate_name(&path, text)?;
        Ok(text.to_owned())
    };
    Ok((
        field("targetCompositeAppVersion")?,
        field("targetDeploymentIntentGroup")?,
    ))
}

fn check_description(body: &Value) -> Result<(), ValidationError> {
    if !body.is_object() {
        return Err(ValidationError {
            path: "(root)".into(),
            message: "must be a JSON object".into(),
        });
    }
    match body.pointer("/metadata/description") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(text)) if text.len() <= 1024 => Ok(()),
        Some(_) => Err(ValidationError {
            path: "metadata.description".into(),
            message: "must be a string of at most 1024 characters".into(),
        }),
    }
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`2026-11-23T13:24:46Z`).
pub fn format_rfc3339(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_and_delete_blocking() {
        let mut s = DigStatus::default();
        assert!(s.apply(Action::Instantiate, "t0".into()).is_err());
        s.apply(Action::Approve, "t1".into()).unwrap();
        assert!(s.apply(Action::Approve, "t1b".into()).is_err());
        assert!(s.delete_blocked.is_none());
        s.apply(Action::Instantiate, "t2".into()).unwrap();
        assert!(s.delete_blocked.is_some());
        assert!(s.apply(Action::Approve, "t3".into()).is_err());
        s.update_to(Action::Update, "ctx2", "t4".into()).unwrap();
        s.apply(Action::Terminate, "t5".into()).unwrap();
        assert_eq!(s.state, DigState::Terminated);
        assert!(s.delete_blocked.is_none());
        assert!(s.apply(Action::Terminate, "t6".into()).is_err());
        s.apply(Action::Instantiate, "t7".into()).unwrap();
        assert_eq!(s.state, DigState::Instantiated);
        assert_eq!(s.actions.len(), 6);
    }

    #[test]
    fn updates_and_rollbacks_keep_a_revision_history() {
        let mut s = DigStatus::default();
        s.apply(Action::Approve, "t1".into()).unwrap();
        assert!(s.update_to(Action::Update, "x", "t1b".into()).is_err());
        s.apply(Action::Instantiate, "t2".into()).unwrap();
        s.set_instance("ctx1", 1);
        assert_eq!(s.update_to(Action::Update, "ctx2", "t3".into()), Ok(2));
        assert_eq!(
            s.state,
            DigState::Instantiated,
            "as upstream, still instantiated"
        );
        assert_eq!(s.current_context(), Some("ctx2"));
        assert_eq!(
            s.status_context_id, "ctx1",
            "status stays in the first context"
        );
        let tail: Vec<(DigState, &str, u64)> = s.actions[2..]
            .iter()
            .map(|a| (a.state, a.instance.as_str(), a.revision))
            .collect();
        assert_eq!(
            tail,
            [
                (DigState::Updated, "ctx1", 1),
                (DigState::Instantiated, "ctx2", 2)
            ]
        );
        assert_eq!(s.context_of_revision(1), Some("ctx1"));
        assert_eq!(s.context_of_revision(2), Some("ctx2"));
        assert_eq!(s.context_of_revision(9), None);
        assert_eq!(s.update_to(Action::Rollback, "ctx1", "t4".into()), Ok(3));
        assert_eq!(s.current_context(), Some("ctx1"));
        assert_eq!(s.context_of_revision(3), Some("ctx1"));
        assert!(s.delete_blocked.is_some());
        // A stopped update may be updated again or terminated.
        s.apply(Action::Stop, "t5".into()).unwrap();
        assert_eq!(s.update_to(Action::Update, "ctx4", "t6".into()), Ok(4));
        assert!(s.update_to(Action::Migrate, "ctx5", "t7".into()).is_err());
    }

    #[test]
    fn a_migrated_group_hands_its_deployment_over() {
        let mut source = DigStatus::default();
        source.apply(Action::Approve, "t1".into()).unwrap();
        source.apply(Action::Instantiate, "t2".into()).unwrap();
        source.set_instance("ctx1", 1);
        let mut target = DigStatus::default();
        assert!(target.migrate_in("ctxT", "ctx1", "t3".into()).is_err());
        target.apply(Action::Approve, "t3".into()).unwrap();
        source.apply(Action::Migrate, "t4".into()).unwrap();
        assert_eq!(target.migrate_in("ctxT", "ctx1", "t4".into()), Ok(1));
        assert_eq!(source.state, DigState::Updated);
        assert!(
            source.delete_blocked.is_none(),
            "nothing is deployed by it any more"
        );
        assert!(source.apply(Action::Terminate, "t5".into()).is_err());
        assert!(source.apply(Action::Instantiate, "t5".into()).is_err());
        assert_eq!(target.state, DigState::Instantiated);
        assert_eq!(target.current_context(), Some("ctxT"));
        assert_eq!(target.status_context_id, "ctx1");
        assert!(target.delete_blocked.is_some());
        // The source may be approved and deployed again on its own.
        source.apply(Action::Approve, "t6".into()).unwrap();
    }

    #[test]
    fn instances_follow_the_deployed_context() {
        let mut s = DigStatus::default();
        s.apply(Action::Approve, "t1".into()).unwrap();
        s.apply(Action::Instantiate, "t2".into()).unwrap();
        s.set_instance("ctx1", 1);
        assert_eq!(s.status_context_id, "ctx1");
        s.apply(Action::Stop, "t3".into()).unwrap();
        assert_eq!(s.actions[2].instance, "ctx1");
        s.apply(Action::Terminate, "t4".into()).unwrap();
        assert_eq!(s.actions[3].instance, "ctx1");
        s.apply(Action::Stop, "t5".into()).unwrap();
        assert_eq!(s.state, DigState::TerminateStopped);
        assert!(
            s.delete_blocked.is_none(),
            "a stopped terminate may be deleted"
        );
        s.apply(Action::Terminate, "t6".into()).unwrap();
        s.apply(Action::Instantiate, "t7".into()).unwrap();
        s.set_instance("ctx2", 2);
        assert_eq!(s.actions.last().unwrap().revision, 2);
        assert_eq!(s.current_context(), Some("ctx2"));
        assert_eq!(s.actions[0].instance, "");
    }

    #[test]
    fn changing_an_approved_group_revokes_the_approval() {
        let mut s = DigStatus::default();
        assert!(!s.revoke_approval("t0".into()));
        s.apply(Action::Approve, "t1".into()).unwrap();
        assert!(s.revoke_approval("t2".into()));
        assert_eq!(s.state, DigState::Created);
        assert!(s.apply(Action::Instantiate, "t3".into()).is_err());
        s.apply(Action::Approve, "t4".into()).unwrap();
        s.apply(Action::Instantiate, "t5".into()).unwrap();
        assert!(!s.revoke_approval("t6".into()));
        assert_eq!(s.state, DigState::Instantiated);
    }

    #[test]
    fn state_document_round_trips() {
        let mut s = DigStatus::default();
        s.apply(Action::Approve, "t".into()).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "Approved");
        assert_eq!(serde_json::from_value::<DigStatus>(v).unwrap(), s);
    }

    #[test]
    fn rollback_and_migrate_bodies() {
        assert_eq!(
            rollback_revision(
                &json!({"metadata": {"description": "Test"}, "spec": {"revision": "1"}})
            ),
            Ok(1)
        );
        assert_eq!(rollback_revision(&json!({"spec": {"revision": 3}})), Ok(3));
        for (body, path) in [
            (json!({}), "spec"),
            (json!({"spec": {}}), "spec.revision"),
            (json!({"spec": {"revision": "two"}}), "spec.revision"),
            (json!({"spec": {"revision": "0"}}), "spec.revision"),
            (json!({"spec": {"revision": true}}), "spec.revision"),
            (
                json!({"metadata": {"description": 5}, "spec": {"revision": "1"}}),
                "metadata.description",
            ),
            (json!([1]), "(root)"),
        ] {
            assert_eq!(rollback_revision(&body).unwrap_err().path, path, "{body}");
        }
        assert_eq!(
            migrate_target(
                &json!({"spec": {"targetCompositeAppVersion": "v2", "targetDeploymentIntentGroup": "dig2"}})
            ),
            Ok(("v2".to_owned(), "dig2".to_owned()))
        );
        for (body, path) in [
            (
                json!({"spec": {"targetDeploymentIntentGroup": "d"}}),
                "spec.targetCompositeAppVersion",
            ),
            (
                json!({"spec": {"targetCompositeAppVersion": "v2"}}),
                "spec.targetDeploymentIntentGroup",
            ),
            (
                json!({"spec": {"targetCompositeAppVersion": "v 2", "targetDeploymentIntentGroup": "d"}}),
                "spec.targetCompositeAppVersion",
            ),
            (
                json!({"spec": {"targetCompositeAppVersion": 2, "targetDeploymentIntentGroup": "d"}}),
                "spec.targetCompositeAppVersion",
            ),
        ] {
            assert_eq!(migrate_target(&body).unwrap_err().path, path, "{body}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_795_440_286), "2026-11-23T13:24:46Z");
    }
}

/// The lifecycle of a logical cloud (kept beside it, like a group's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloudState {
    #[default]
    Created,
    Instantiated,
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloudAction {
    Instantiate,
    Terminate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action:?} a logical cloud in state {state:?}: {hint}")]
pub struct CloudTransitionError {
    pub action: CloudAction,
    pub state: CloudState,
    pub hint: &'static str,
}

/// The stored state document of a logical cloud.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudStatus {
    pub state: CloudState,
    #[serde(default)]
    pub actions: Vec<CloudActionRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_blocked: Option<String>,
    /// A standard or privileged cloud's context: what its last instantiate put on the clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The cloud user's private key (PEM), sealed (`emco_store::seal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_key: Option<String>,
    /// The user's certificate request (PEM): every cluster, also one added by an update, gets
    /// the same one (a CSR's spec cannot change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_request: Option<String>,
    /// The context whose id labels the cloud's objects (its instantiate's), kept by updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_context: Option<String>,
    /// How many contexts the cloud had (each instantiate and update makes one).
    #[serde(default)]
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudActionRecord {
    pub state: CloudState,
    pub time: String,
    /// The context the action worked on (standard and privileged clouds; served as
    /// `instance`, as for groups).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
}

impl CloudStatus {
    pub fn apply(&mut self, action: CloudAction, time: String) -> Result<(), CloudTransitionError> {
        let refuse = |hint| {
            Err(CloudTransitionError {
                action,
                state: self.state,
                hint,
            })
        };
        let next = match (action, self.state) {
            (CloudAction::Instantiate, CloudState::Created | CloudState::Terminated) => {
                CloudState::Instantiated
            }
            (CloudAction::Instantiate, CloudState::Instantiated) => {
                return refuse("it is already instantiated");
            }
            (CloudAction::Terminate, CloudState::Instantiated) => CloudState::Terminated,
            (CloudAction::Terminate, _) => return refuse("it is not instantiated"),
        };
        self.state = next;
        self.actions.push(CloudActionRecord {
            state: next,
            time,
            instance: String::new(),
        });
        self.delete_blocked = (next == CloudState::Instantiated)
            .then(|| "the logical cloud is instantiated; terminate it first".to_owned());
        Ok(())
    }
}

/// An admin (level-0) logical cloud without a namespace gets `default` when instantiated, as
/// upstream does; the returned document is what the cloud then reads back as.
pub fn admin_cloud_on_instantiate(cloud: &Value) -> Option<Value> {
    let namespace = cloud
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !namespace.is_empty() {
        return None;
    }
    let mut updated = cloud.clone();
    let spec = updated
        .as_object_mut()?
        .entry("spec")
        .or_insert_with(|| json!({}));
    spec.as_object_mut()?
        .insert("namespace".into(), Value::String("default".into()));
    Some(updated)
}

/// Whether a logical cloud is an admin (level-0) cloud. A cloud that names no level is a
/// standard (level-1) one, as upstream defaults it.
pub fn is_admin_cloud(cloud: &Value) -> bool {
    cloud.pointer("/spec/level").and_then(Value::as_str) == Some("0")
}

#[cfg(test)]
mod cloud_tests {
    use super::*;

    #[test]
    fn cloud_state_machine() {
        let mut s = CloudStatus::default();
        assert!(s.apply(CloudAction::Terminate, "t".into()).is_err());
        s.apply(CloudAction::Instantiate, "t1".into()).unwrap();
        assert!(s.delete_blocked.is_some());
        assert!(s.apply(CloudAction::Instantiate, "t2".into()).is_err());
        s.apply(CloudAction::Terminate, "t3".into()).unwrap();
        assert!(s.delete_blocked.is_none());
        assert!(s.apply(CloudAction::Terminate, "t4".into()).is_err());
        s.apply(CloudAction::Instantiate, "t5".into()).unwrap();
        assert_eq!(s.actions.len(), 3);
    }

    #[test]
    fn admin_clouds_get_the_default_namespace() {
        let cloud = json!({"metadata": {"name": "a"}, "spec": {"level": "0", "namespace": ""}});
        assert!(is_admin_cloud(&cloud));
        assert_eq!(
            admin_cloud_on_instantiate(&cloud).unwrap()["spec"]["namespace"],
            "default"
        );
        let named = json!({"metadata": {"name": "a"}, "spec": {"level": "0", "namespace": "ns"}});
        assert_eq!(admin_cloud_on_instantiate(&named), None);
        assert!(!is_admin_cloud(&json!({"spec": {"level": "1"}})));
        assert!(
            !is_admin_cloud(&json!({"spec": {"namespace": "ns1"}})),
            "level 1 by default"
        );
    }
}
