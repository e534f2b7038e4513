//! Network manager kinds: provider networks and virtual networks of a cluster.
//!
//! Besides the schemas, upstream's handlers check the network contents before storing them (the
//! CNI type, the provider network type, IPv4 subnets in CIDR form, the VLAN id and node selector,
//! node labels, names as Kubernetes label values); those checks are here too, as formats and
//! cross-field checks.

use std::net::Ipv4Addr;

use super::common::{NAME, metadata_k8s_name, name};
use super::dsl::{
    Branch, CheckError, Fields, Format, Schema, StringRule, StructRule, array, kept, omitempty,
    pattern, string, structure,
};

// Upstream's pattern is not anchored at the start: it only asks the subnet to end in a word.
pattern!(SUBNET_TAIL = "[-_0-9a-zA-Z]+$");
pattern!(DNS1123_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
pattern!(DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");

pub(super) fn schemas() -> Vec<(&'static str, Schema)> {
    vec![
        ("providerNetwork", provider_network()),
        ("network", network()),
    ]
}

/// The only CNI upstream's network manager supports.
const CNI_TYPES: &[&str] = &["ovn4nfv"];

fn cni_type() -> StringRule {
    name().one_of(CNI_TYPES)
}

const IPV4_CIDR: Format = Format {
    name: "IPv4 CIDR",
    is_valid: is_ipv4_cidr,
};
const IPV4_EXCLUDE_LIST: Format = Format {
    name: "list of IPv4 addresses and ranges (a.b.c.d or a.b.c.d..e.f.g.h)",
    is_valid: is_ipv4_exclude_list,
};
const VLAN_ID: Format = Format {
    name: "VLAN id (0 to 4095)",
    is_valid: is_vlan_id,
};
const VLAN_NODE_SELECTOR: Format = Format {
    name: "VLAN node selector (any or specific)",
    is_valid: is_vlan_node_selector,
};
const PROVIDER_NET_TYPE: Format = Format {
    name: "provider network type (VLAN or DIRECT)",
    is_valid: is_provider_net_type,
};
const NODE_LABEL: Format = Format {
    name: "node label ([prefix/]name=value or value)",
    is_valid: is_node_label,
};

/// `ipv4Subnets[]`, checked both by the schema and by upstream's handler.
fn ipv4_subnet(exclude_max_chars: usize) -> StructRule {
    structure([
        kept(
            "subnet",
            string()
                .max_chars(128)
                .pattern(&SUBNET_TAIL)
                .format(IPV4_CIDR),
        )
        .required(),
        kept("name", name().max_chars(63)).required(),
        omitempty("gateway", string().max_chars(128).format(IPV4_CIDR)),
        omitempty(
            "excludeIps",
            string()
                .max_chars(exclude_max_chars)
                .format(IPV4_EXCLUDE_LIST),
        ),
    ])
}

/// `ipv6Subnets[]`: upstream checks only the schema for these.
fn ipv6_subnet(exclude_max_chars: usize) -> StructRule {
    structure([
        kept("subnet", string().max_chars(128).pattern(&SUBNET_TAIL)).required(),
        kept("name", name()).required(),
        omitempty("gateway", string().max_chars(128)),
        omitempty("excludeIps", string().max_chars(exclude_max_chars)),
    ])
}

fn some_subnets() -> [Branch; 2] {
    [
        Branch::new("ipv4Subnets").requires(["ipv4Subnets"]),
        Branch::new("ipv6Subnets").requires(["ipv6Subnets"]),
    ]
}

/// `provider-network.json`.
fn provider_network() -> Schema {
    let vlan = structure([
        kept("vlanID", string().max_chars(128).format(VLAN_ID)).required(),
        kept("providerInterfaceName", string().max_chars(128)).required(),
        kept("logicalInterfaceName", string().max_chars(128)).required(),
        kept(
            "vlanNodeSelector",
            string().max_chars(128).format(VLAN_NODE_SELECTOR),
        )
        .required(),
        kept(
            "nodeLabelList",
            array(string().max_chars(128).format(NODE_LABEL)),
        )
        .required(),
    ])
    .check("nodeLabelsForSpecificNodes", node_labels_for_specific_nodes);
    structure([
        metadata_k8s_name(),
        kept(
            "spec",
            structure([
                kept("cniType", cni_type()).required(),
                omitempty("ipv4Subnets", array(ipv4_subnet(128))),
                omitempty("ipv6Subnets", array(ipv6_subnet(128))),
                kept("providerNetType", name().format(PROVIDER_NET_TYPE)).required(),
                kept("vlan", vlan).required(),
            ])
            .any_of(some_subnets()),
        ),
    ])
    .into()
}

/// `virtual-network.json`.
fn network() -> Schema {
    structure([
        metadata_k8s_name(),
        kept(
            "spec",
            structure([
                kept("cniType", cni_type()).required(),
                omitempty("ipv4Subnets", array(ipv4_subnet(1024))),
                omitempty("ipv6Subnets", array(ipv6_subnet(1024))),
            ])
            .any_of(some_subnets()),
        ),
    ])
    .into()
}

/// Go's `net.ParseCIDR` accepting an IPv4 address: `a.b.c.d/n`, `n` at most 32.
fn is_ipv4_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    address.parse::<Ipv4Addr>().is_ok()
        && !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && prefix.parse::<u8>().is_ok_and(|bits| bits <= 32)
}

/// Space-separated IPv4 addresses and `first..last` ranges.
fn is_ipv4_exclude_list(text: &str) -> bool {
    text.split_whitespace().all(|item| {
        item.splitn(2, "..")
            .all(|address| address.parse::<Ipv4Addr>().is_ok())
    })
}

/// Go's `strconv.Atoi` of a number from 0 to 4095.
fn is_vlan_id(text: &str) -> bool {
    text.parse::<i64>().is_ok_and(|id| (0..=4095).contains(&id))
}

fn is_vlan_node_selector(text: &str) -> bool {
    ["any", "specific"]
        .iter()
        .any(|selector| text.eq_ignore_ascii_case(selector))
}

fn is_provider_net_type(text: &str) -> bool {
    ["VLAN", "DIRECT"]
        .iter()
        .any(|kind| text.eq_ignore_ascii_case(kind))
}

fn is_label_value(text: &str) -> bool {
    text.len() <= 63 && NAME.is_match(text)
}

/// Upstream's node label rule: `value`, or `[prefix/]name=value` with a DNS subdomain prefix,
/// a DNS label name and a Kubernetes label value.
fn is_node_label(label: &str) -> bool {
    let (prefix, name, value, expect_name, expect_prefix) = match label.split_once('=') {
        None => ("", "", label, false, false),
        Some((key, value)) => match key.split_once('/') {
            None => ("", key, value, true, false),
            Some((prefix, name)) => (prefix, name, value, true, true),
        },
    };
    let prefix_ok = if prefix.is_empty() {
        !expect_prefix
    } else {
        prefix.len() <= 253 && DNS1123_SUBDOMAIN.is_match(prefix)
    };
    let name_ok = !expect_name || (name.len() <= 63 && DNS1123_LABEL.is_match(name));
    prefix_ok && name_ok && !value.is_empty() && is_label_value(value)
}

/// A `specific` node selector needs at least one node label.
fn node_labels_for_specific_nodes(vlan: &Fields<'_>) -> Result<(), CheckError> {
    let specific = vlan
        .str("vlanNodeSelector")
        .is_some_and(|s| s.eq_ignore_ascii_case("specific"));
    let has_labels = vlan
        .get("nodeLabelList")
        .and_then(|labels| labels.as_array())
        .is_some_and(|l| !l.is_empty());
    if specific && !has_labels {
        return Err(CheckError::new(
            "nodeLabelList",
            "needs at least one label when vlanNodeSelector is \"specific\"",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::validate::validate;

    fn provider_network(spec_changes: Value) -> Value {
        let mut body = json!({"metadata": {"name": "net1"}, "spec": {
            "cniType": "ovn4nfv",
            "ipv4Subnets": [{"subnet": "172.16.30.0/24", "name": "subnet1", "gateway": "172.16.30.1/24",
                "excludeIps": "172.16.30.2 172.16.30.5..172.16.30.10"}],
            "providerNetType": "VLAN",
            "vlan": {"vlanID": "102", "providerInterfaceName": "eth1", "logicalInterfaceName": "eth1.102",
                "vlanNodeSelector": "specific", "nodeLabelList": ["kubernetes.io/hostname=localhost"]}}});
        if let (Some(spec), Some(changes)) =
            (body["spec"].as_object_mut(), spec_changes.as_object())
        {
            for (k, v) in changes {
                spec.insert(k.clone(), v.clone());
            }
        }
        body
    }

    #[test]
    fn accepts_a_complete_provider_network() {
        assert_eq!(
            validate("providerNetwork", &provider_network(json!({}))),
            Ok(())
        );
    }

    #[test]
    fn needs_some_subnets() {
        let err = validate(
            "providerNetwork",
            &provider_network(json!({"ipv4Subnets": []})),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec: must match at least one of: ipv4Subnets; ipv6Subnets"
        );
    }

    #[test]
    fn specific_node_selector_needs_labels() {
        let body = provider_network(json!({"vlan": {"vlanID": "1", "providerInterfaceName": "e",
            "logicalInterfaceName": "e.1", "vlanNodeSelector": "SPECIFIC", "nodeLabelList": []}}));
        assert_eq!(
            validate("providerNetwork", &body).unwrap_err().path,
            "spec.vlan.nodeLabelList"
        );
    }

    #[test]
    fn formats_follow_upstream_handlers() {
        assert!(
            is_ipv4_cidr("10.0.0.0/8") && is_ipv4_cidr("0.0.0.0/0") && is_ipv4_cidr("1.2.3.4/32")
        );
        assert!(
            !is_ipv4_cidr("10.0.0.0") && !is_ipv4_cidr("10.0.0.0/33") && !is_ipv4_cidr("::1/64")
        );
        assert!(
            !is_ipv4_cidr("10.0.0.0/") && !is_ipv4_cidr("10.0.0/8") && !is_ipv4_cidr("10.0.0.0/+8")
        );
        assert!(is_ipv4_exclude_list("") && is_ipv4_exclude_list("1.1.1.1  2.2.2.2..2.2.2.9"));
        assert!(!is_ipv4_exclude_list("1.1.1.1-2.2.2.2") && !is_ipv4_exclude_list("1.1.1.1..x"));
        assert!(
            is_vlan_id("0")
                && is_vlan_id("4095")
                && !is_vlan_id("4096")
                && !is_vlan_id("")
                && !is_vlan_id("-1")
        );
        assert!(is_vlan_node_selector("Any") && !is_vlan_node_selector("some"));
        assert!(is_provider_net_type("direct") && !is_provider_net_type("vxlan"));
        for good in ["localhost", "net=a", "kubernetes.io/hostname=node-1"] {
            assert!(is_node_label(good), "{good}");
        }
        for bad in ["", "a=", "/n=v", "UPPER/n=v", "p/N=v", "n=-v", "=v"] {
            assert!(!is_node_label(bad), "{bad}");
        }
    }
}
