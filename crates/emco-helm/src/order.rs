//! Helm 3's install and uninstall order by kind (`pkg/releaseutil/kind_sorter.go` as of Helm
//! 3.17.1) and the execution order of hooks (`pkg/action/hooks.go`).
//!
//! Helm sorts manifests stably by the rank of their kind in [`INSTALL_ORDER`] (or
//! [`UNINSTALL_ORDER`]); kinds missing from the list come after every listed kind, ordered
//! alphabetically by kind, and objects of the same kind keep their previous relative order.
//! Within one event, hooks run by ascending weight and then by name.

use std::cmp::Ordering;

/// Kinds in the order Helm creates them (Helm 3.17.1 `releaseutil.InstallOrder`).
pub const INSTALL_ORDER: &[&str] = &[
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

/// Kinds in the order Helm deletes them (Helm 3.17.1 `releaseutil.UninstallOrder`).
///
/// Not quite the reverse of [`INSTALL_ORDER`]: `Service` goes right after the ingress kinds, and
/// kinds missing from the list are still deleted last (after `Namespace`).
pub const UNINSTALL_ORDER: &[&str] = &[
    "APIService",
    "Ingress",
    "IngressClass",
    "Service",
    "CronJob",
    "Job",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "Deployment",
    "ReplicaSet",
    "ReplicationController",
    "Pod",
    "DaemonSet",
    "RoleBindingList",
    "RoleBinding",
    "RoleList",
    "Role",
    "ClusterRoleBindingList",
    "ClusterRoleBinding",
    "ClusterRoleList",
    "ClusterRole",
    "CustomResourceDefinition",
    "PersistentVolumeClaim",
    "PersistentVolume",
    "StorageClass",
    "ConfigMap",
    "SecretList",
    "Secret",
    "ServiceAccount",
    "PodDisruptionBudget",
    "PodSecurityPolicy",
    "LimitRange",
    "ResourceQuota",
    "NetworkPolicy",
    "Namespace",
    "PriorityClass",
];

/// Where a kind sorts: listed kinds by their position, then unlisted kinds by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KindRank<'a> {
    Listed(usize),
    Unlisted(&'a str),
}

fn rank<'a>(order: &[&str], kind: &'a str) -> KindRank<'a> {
    order
        .iter()
        .position(|listed| *listed == kind)
        .map_or(KindRank::Unlisted(kind), KindRank::Listed)
}

/// Compares two kinds as Helm's kind sorter does under `order`: [`Ordering::Equal`] means "keep
/// the existing relative order" (same kind, or two equally ranked kinds).
pub fn compare_kinds(order: &[&str], first: &str, second: &str) -> Ordering {
    rank(order, first).cmp(&rank(order, second))
}

/// Sorts `items` in place, stably, into Helm's order for `order` (use [`INSTALL_ORDER`] or
/// [`UNINSTALL_ORDER`]); `kind_of` gives each item's kind.
pub fn sort_by_kind<T>(items: &mut [T], order: &[&str], kind_of: impl Fn(&T) -> &str) {
    items.sort_by(|first, second| compare_kinds(order, kind_of(first), kind_of(second)));
}

/// Sorts hooks of one event, stably, into the order Helm runs them: ascending weight, then name.
/// Feed them in install order (Helm pre-sorts hooks by kind, and the sort keeps that among equal
/// weights and names).
pub fn sort_hooks_for_execution<T>(
    hooks: &mut [T],
    weight_of: impl Fn(&T) -> i64,
    name_of: impl Fn(&T) -> &str,
) {
    hooks.sort_by(|first, second| {
        weight_of(first)
            .cmp(&weight_of(second))
            .then_with(|| name_of(first).cmp(name_of(second)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(kinds: &[&'static str], order: &[&str]) -> Vec<&'static str> {
        let mut kinds = kinds.to_vec();
        sort_by_kind(&mut kinds, order, |kind| kind);
        kinds
    }

    #[test]
    fn install_order_follows_helm_list() {
        let kinds = [
            "Deployment",
            "Service",
            "ConfigMap",
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "Secret",
            "ServiceAccount",
            "PriorityClass",
            "Job",
            "Ingress",
            "IngressClass",
            "APIService",
        ];
        assert_eq!(
            sorted(&kinds, INSTALL_ORDER),
            [
                "PriorityClass",
                "Namespace",
                "ServiceAccount",
                "Secret",
                "ConfigMap",
                "CustomResourceDefinition",
                "ClusterRole",
                "Service",
                "Deployment",
                "Job",
                "IngressClass",
                "Ingress",
                "APIService",
            ]
        );
    }

    #[test]
    fn unknown_kinds_go_last_alphabetically() {
        let kinds = ["Widget", "Service", "Alpha", "Namespace", "Gadget"];
        assert_eq!(
            sorted(&kinds, INSTALL_ORDER),
            ["Namespace", "Service", "Alpha", "Gadget", "Widget"]
        );
        // Uninstall puts unknown kinds last too, even after Namespace.
        assert_eq!(
            sorted(&kinds, UNINSTALL_ORDER),
            ["Service", "Namespace", "Alpha", "Gadget", "Widget"]
        );
    }

    #[test]
    fn same_kind_keeps_input_order() {
        let mut items = vec![
            ("Service", "b"),
            ("ConfigMap", "z"),
            ("Service", "a"),
            ("Mystery", "2"),
            ("ConfigMap", "y"),
            ("Mystery", "1"),
        ];
        sort_by_kind(&mut items, INSTALL_ORDER, |item| item.0);
        assert_eq!(
            items,
            [
                ("ConfigMap", "z"),
                ("ConfigMap", "y"),
                ("Service", "b"),
                ("Service", "a"),
                ("Mystery", "2"),
                ("Mystery", "1"),
            ]
        );
    }

    #[test]
    fn uninstall_order_is_not_a_plain_reverse() {
        let kinds = ["Namespace", "Service", "Deployment", "Ingress", "ConfigMap"];
        assert_eq!(
            sorted(&kinds, UNINSTALL_ORDER),
            ["Ingress", "Service", "Deployment", "ConfigMap", "Namespace"]
        );
        // Every kind Helm installs it also knows how to uninstall, and vice versa.
        let mut install: Vec<_> = INSTALL_ORDER.to_vec();
        let mut uninstall: Vec<_> = UNINSTALL_ORDER.to_vec();
        install.sort_unstable();
        uninstall.sort_unstable();
        assert_eq!(install, uninstall);
    }

    #[test]
    fn hooks_run_by_weight_then_name_keeping_kind_order_on_ties() {
        let mut hooks = vec![
            (5, "b", "ConfigMap"),
            (-1, "z", "Job"),
            (5, "a", "Job"),
            (0, "m", "Secret"),
            (5, "a", "Pod"),
        ];
        sort_hooks_for_execution(&mut hooks, |hook| hook.0, |hook| hook.1);
        assert_eq!(
            hooks,
            [
                (-1, "z", "Job"),
                (0, "m", "Secret"),
                (5, "a", "Job"),
                (5, "a", "Pod"),
                (5, "b", "ConfigMap"),
            ]
        );
    }
}
