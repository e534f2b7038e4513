//! OVN action controller kinds: network controller intents, workload intents and the network
//! interfaces of a workload (with the checks upstream's interface handler adds to its schema).

use std::net::IpAddr;

use super::common::{NAME, metadata, name};
use super::dsl::{Format, Schema, kept, omitempty, string, structure};

pub(super) fn schemas() -> Vec<(&'static str, Schema)> {
    vec![
        ("netControllerIntent", structure([metadata()]).into()),
        ("workloadIntent", workload_intent()),
        ("interfaceIntent", interface_intent()),
    ]
}

/// `network-workload.json`.
fn workload_intent() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                kept("app", name()).required(),
                kept("workloadResource", name().max_chars(254)).required(),
                kept("type", name()).required(),
            ]),
        ),
    ])
    .into()
}

const OPTIONAL_INTERFACE_NAME: Format = Format {
    name: "interface name (at most 63 characters)",
    is_valid: is_optional_interface_name,
};
const IP_ADDRESS: Format = Format {
    name: "IP address",
    is_valid: is_ip_address,
};
const MAC_ADDRESS: Format = Format {
    name: "MAC address",
    is_valid: is_mac_address,
};

/// `network-load-interface.json`; the handler also holds names to 63 characters.
fn interface_intent() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                kept("interface", name().max_chars(63)).required(),
                kept("name", name().max_chars(63)).required(),
                kept(
                    "defaultGateway",
                    string().max_chars(128).format(OPTIONAL_INTERFACE_NAME),
                ),
                omitempty("ipAddress", string().max_chars(128).format(IP_ADDRESS)),
                omitempty("macAddress", string().max_chars(128).format(MAC_ADDRESS)),
            ]),
        ),
    ])
    .into()
}

fn is_optional_interface_name(text: &str) -> bool {
    text.is_empty() || (text.len() <= 63 && NAME.is_match(text))
}

fn is_ip_address(text: &str) -> bool {
    text.parse::<IpAddr>().is_ok()
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets as hex pairs separated by `:` or `-`, or as groups
/// of four hex digits separated by `.`.
fn is_mac_address(text: &str) -> bool {
    let octets_ok = |count: usize| [6, 8, 20].contains(&count);
    let hex =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit());
    for separator in [':', '-'] {
        if text.contains(separator) {
            let parts: Vec<&str> = text.split(separator).collect();
            return octets_ok(parts.len()) && parts.iter().all(|p| hex(p, 2));
        }
    }
    let groups: Vec<&str> = text.split('.').collect();
    groups.len() > 1 && octets_ok(groups.len() * 2) && groups.iter().all(|g| hex(g, 4))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validate::validate;

    #[test]
    fn interface_addresses_are_checked_when_given() {
        let body = |ip: &str, mac: &str| {
            json!({"metadata": {"name": "if0"}, "spec": {"interface": "eth1", "name": "net1",
                "defaultGateway": "false", "ipAddress": ip, "macAddress": mac}})
        };
        assert_eq!(validate("interfaceIntent", &body("", "")), Ok(()));
        assert_eq!(
            validate("interfaceIntent", &body("10.10.20.5", "52:54:00:4e:4f:2b")),
            Ok(())
        );
        assert_eq!(
            validate("interfaceIntent", &body("10.10.20", ""))
                .unwrap_err()
                .path,
            "spec.ipAddress"
        );
        assert_eq!(
            validate("interfaceIntent", &body("", "52:54:00"))
                .unwrap_err()
                .path,
            "spec.macAddress"
        );
    }

    #[test]
    fn mac_formats_follow_go() {
        for good in [
            "00:00:5e:00:53:01",
            "00-00-5E-00-53-01",
            "0000.5e00.5301",
            "02:00:5e:10:00:00:00:01",
        ] {
            assert!(is_mac_address(good), "{good}");
        }
        for bad in [
            "",
            "00:00:5e:00:53",
            "0000.5e00",
            "00:00:5e:00:53:0g",
            "00:00:5e-00:53:01",
        ] {
            assert!(!is_mac_address(bad), "{bad}");
        }
    }
}
