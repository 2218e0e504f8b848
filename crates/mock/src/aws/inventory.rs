//! The emulated account's resources: what EC2 `Describe*` calls list and what
//! `mock-state.json` reports. Stacks add and remove them; sweep tests plant strays.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Which EC2 listing a resource appears in; `Other` resources (subnets, IAM roles, wait
/// conditions...) are only reported in the state snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Instance,
    Volume,
    SecurityGroup,
    NetworkInterface,
    Address,
    Vpc,
    NatGateway,
    Other,
}

/// One emulated resource. Fields a kind does not have stay `None`.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    pub id: String,
    pub kind: Option<Kind>,
    /// The CloudFormation type, also the `type` in `mock-state.json`.
    pub cfn_type: String,
    pub tags: Vec<(String, String)>,
    /// `running`/`terminated`, `in-use`/`available`, `available`/`deleted`.
    pub state: String,
    pub created: Option<DateTime<Utc>>,
    pub instance_type: Option<String>,
    pub image_id: Option<String>,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub subnet_id: Option<String>,
    pub vpc_id: Option<String>,
    pub availability_zone: Option<String>,
    /// The instance a volume, ENI or address is attached to.
    pub attached_to: Option<String>,
    pub allocation_id: Option<String>,
    pub cidr: Option<String>,
    pub group_name: Option<String>,
    pub description: Option<String>,
    pub size_gib: Option<u32>,
    pub spot: bool,
    /// The root volume deletes with its instance.
    pub delete_on_termination: bool,
    /// An instance's serial console, line by line (`GetConsoleOutput`).
    pub console: Vec<String>,
}

impl Resource {
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::Other)
    }

    /// Terminated instances and deleted NAT gateways stay listed for a while, as on AWS,
    /// but are gone.
    pub fn is_gone(&self) -> bool {
        matches!(self.state.as_str(), "terminated" | "deleted")
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An EC2 `Describe*` filter that is not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The filter '{0}' is invalid")]
pub struct InvalidFilter(pub String);

/// AWS filter values allow `*` and `?` wildcards.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// Whether `r` passes every filter (values of one filter are alternatives).
pub fn matches(r: &Resource, filters: &[(String, Vec<String>)]) -> Result<bool, InvalidFilter> {
    for (name, values) in filters {
        let any = |field: Option<&str>| field.is_some_and(|f| values.iter().any(|v| glob(v, f)));
        let ok = if let Some(key) = name.strip_prefix("tag:") {
            any(r.tag(key))
        } else {
            match name.as_str() {
                "tag-key" => r
                    .tags
                    .iter()
                    .any(|(k, _)| values.iter().any(|v| glob(v, k))),
                "tag-value" => r
                    .tags
                    .iter()
                    .any(|(_, val)| values.iter().any(|v| glob(v, val))),
                "instance-state-name" | "status" | "state" => any(Some(&r.state)),
                "instance-id" | "volume-id" | "group-id" | "network-interface-id" | "vpc-id"
                    if name.trim_end_matches("-id") == kind_filter_stem(r.kind()) =>
                {
                    any(Some(&r.id))
                }
                "vpc-id" => any(r.vpc_id.as_deref()),
                "subnet-id" => any(r.subnet_id.as_deref()),
                "instance-type" => any(r.instance_type.as_deref()),
                "group-name" => any(r.group_name.as_deref()),
                "allocation-id" => any(r.allocation_id.as_deref()),
                "public-ip" => any(r.public_ip.as_deref()),
                "domain" => any(Some("vpc")),
                "attachment.instance-id" => any(r.attached_to.as_deref()),
                "nat-gateway-id" => any(Some(&r.id)),
                other => return Err(InvalidFilter(other.to_string())),
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn kind_filter_stem(kind: Kind) -> &'static str {
    match kind {
        Kind::Instance => "instance",
        Kind::Volume => "volume",
        Kind::SecurityGroup => "group",
        Kind::NetworkInterface => "network-interface",
        Kind::Vpc => "vpc",
        _ => "",
    }
}

#[derive(Debug, Default)]
pub struct Inventory {
    resources: BTreeMap<String, Resource>,
}

impl Inventory {
    pub fn insert(&mut self, r: Resource) {
        self.resources.insert(r.id.clone(), r);
    }

    pub fn get(&self, id: &str) -> Option<&Resource> {
        self.resources.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Resource> {
        self.resources.get_mut(id)
    }

    pub fn remove(&mut self, id: &str) -> Option<Resource> {
        self.resources.remove(id)
    }

    /// Every resource, in id order.
    pub fn all(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values()
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.resources.values().filter(move |r| r.kind() == kind)
    }

    /// Deletes `id` the way its kind is deleted: instances terminate (their root volume and
    /// ENI go too), NAT gateways turn `deleted`, the rest disappear.
    pub fn delete(&mut self, id: &str) {
        let Some(r) = self.resources.get_mut(id) else {
            return;
        };
        match r.kind() {
            Kind::Instance => {
                r.state = "terminated".into();
                r.public_ip = None;
                let dependants: Vec<String> = self
                    .resources
                    .values()
                    .filter(|x| x.attached_to.as_deref() == Some(id))
                    .map(|x| x.id.clone())
                    .collect();
                for d in dependants {
                    let remove = match self.resources.get_mut(&d) {
                        Some(x) if x.kind() == Kind::Volume && !x.delete_on_termination => {
                            x.attached_to = None;
                            x.state = "available".into();
                            false
                        }
                        Some(x) if x.kind() == Kind::Address => {
                            x.attached_to = None;
                            false
                        }
                        Some(_) => true,
                        None => false,
                    };
                    if remove {
                        self.resources.remove(&d);
                    }
                }
            }
            Kind::NatGateway => r.state = "deleted".into(),
            _ => {
                self.resources.remove(id);
            }
        }
    }

    /// Everything still present, for `mock-state.json`.
    pub fn remaining(&self) -> Vec<Value> {
        self.resources
            .values()
            .filter(|r| !r.is_gone())
            .map(|r| {
                let tags: serde_json::Map<String, Value> = r
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                json!({ "type": r.cfn_type, "id": r.id, "tags": tags })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(id: &str, tags: &[(&str, &str)]) -> Resource {
        Resource {
            id: id.into(),
            kind: Some(Kind::Volume),
            cfn_type: "AWS::EC2::Volume".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state: "available".into(),
            ..Default::default()
        }
    }

    #[test]
    fn filters_by_tag_key_value_and_state() {
        let v = volume("vol-1", &[("cloudtest:run-id", "r1")]);
        let f = |n: &str, vals: &[&str]| {
            vec![(n.to_string(), vals.iter().map(|s| s.to_string()).collect())]
        };
        assert_eq!(matches(&v, &f("tag:cloudtest:run-id", &["r1"])), Ok(true));
        assert_eq!(matches(&v, &f("tag:cloudtest:run-id", &["r2"])), Ok(false));
        assert_eq!(matches(&v, &f("tag-key", &["cloudtest:*"])), Ok(true));
        assert_eq!(
            matches(&v, &f("status", &["available", "in-use"])),
            Ok(true)
        );
        assert_eq!(matches(&v, &f("volume-id", &["vol-1"])), Ok(true));
        assert!(matches(&v, &f("bogus", &["x"])).is_err());
    }

    #[test]
    fn terminating_an_instance_takes_its_root_volume_unless_kept() {
        let mut inv = Inventory::default();
        inv.insert(Resource {
            id: "i-1".into(),
            kind: Some(Kind::Instance),
            state: "running".into(),
            ..Default::default()
        });
        let mut root = volume("vol-root", &[]);
        root.attached_to = Some("i-1".into());
        root.delete_on_termination = true;
        inv.insert(root);
        let mut kept = volume("vol-kept", &[]);
        kept.attached_to = Some("i-1".into());
        inv.insert(kept);
        inv.delete("i-1");
        assert!(inv.get("vol-root").is_none());
        assert_eq!(
            inv.get("vol-kept").map(|v| v.state.as_str()),
            Some("available")
        );
        assert_eq!(inv.get("i-1").map(|i| i.state.as_str()), Some("terminated"));
        let ids: Vec<Value> = inv
            .remaining()
            .into_iter()
            .map(|v| v["id"].clone())
            .collect();
        assert_eq!(ids, vec![json!("vol-kept")]);
    }
}
