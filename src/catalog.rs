//! The instance-type catalogue (`data/instance-types.csv`, embedded) and the
//! EKS max-pods calculator (docs/sources.md §3).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The catalogue shipped with the binary.
pub const EMBEDDED_CSV: &str = include_str!("../data/instance-types.csv");

/// Hypervisor as the CNI's limits table reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Hypervisor {
    Nitro,
    Xen,
    Unknown,
}

/// One instance type's network and size facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceType {
    #[serde(rename = "instance_type", alias = "name")]
    pub name: String,
    /// Network interfaces on the default network card.
    pub enis: u32,
    /// IPv4 addresses per interface, primary included.
    pub ipv4_per_eni: u32,
    #[serde(default = "one")]
    pub network_cards: u32,
    pub hypervisor: Hypervisor,
    #[serde(default)]
    pub bare_metal: bool,
    pub vcpu: Option<u32>,
    pub memory_mib: Option<u64>,
    pub allocatable_cpu_millis: Option<u64>,
    pub allocatable_memory_mib: Option<u64>,
    pub branch_enis: Option<u32>,
}

fn one() -> u32 {
    1
}

impl InstanceType {
    /// Prefix delegation is available: Nitro hypervisor or bare metal (§3).
    pub fn supports_prefix_delegation(&self) -> bool {
        self.hypervisor == Hypervisor::Nitro || self.bare_metal
    }

    /// The CNI's `eni-max-pods.txt` value: `enis * (ipv4_per_eni - 1) + 2`.
    pub fn eni_max_pods(&self) -> u32 {
        self.enis * (self.ipv4_per_eni.saturating_sub(1)) + 2
    }

    /// Slots per ENI: one address is the ENI's primary (§4).
    pub fn slots_per_eni(&self) -> u32 {
        self.ipv4_per_eni.saturating_sub(1)
    }

    pub fn family(&self) -> &str {
        self.name.split('.').next().unwrap_or(&self.name)
    }
}

/// Error reading or querying a catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown instance type `{name}`{}", suggestions(.nearest))]
    UnknownType { name: String, nearest: Vec<String> },
    #[error("no instance family `{name}` in the catalogue{}", suggestions(.nearest))]
    UnknownFamily { name: String, nearest: Vec<String> },
    #[error("instance catalogue, line {line}: {message}")]
    Parse { line: u64, message: String },
    #[error("instance type `{0}` has no vCPU count in the catalogue; give it with --vcpus")]
    UnknownVcpu(String),
}

fn suggestions(nearest: &[String]) -> String {
    if nearest.is_empty() {
        String::new()
    } else {
        format!("; nearest: {}", nearest.join(", "))
    }
}

/// A set of instance types by name.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    types: BTreeMap<String, InstanceType>,
}

impl Catalog {
    /// Parses a catalogue in the `instance-types.csv` format.
    pub fn from_csv(text: &str) -> Result<Self, CatalogError> {
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let mut types = BTreeMap::new();
        for rec in rdr.deserialize::<InstanceType>() {
            let t = rec.map_err(|e| CatalogError::Parse {
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            })?;
            types.insert(t.name.clone(), t);
        }
        Ok(Catalog { types })
    }

    /// The embedded catalogue (parsed once).
    pub fn embedded() -> &'static Catalog {
        static CAT: OnceLock<Catalog> = OnceLock::new();
        CAT.get_or_init(|| Catalog::from_csv(EMBEDDED_CSV).expect("embedded catalogue parses"))
    }

    pub fn get(&self, name: &str) -> Result<&InstanceType, CatalogError> {
        self.types
            .get(name)
            .ok_or_else(|| CatalogError::UnknownType {
                name: name.to_string(),
                nearest: self.nearest(name, 5),
            })
    }

    /// Adds or replaces a type (scenario overrides).
    pub fn insert(&mut self, t: InstanceType) {
        self.types.insert(t.name.clone(), t);
    }

    pub fn iter(&self) -> impl Iterator<Item = &InstanceType> {
        self.types.values()
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The `k` names closest to `name` by edit distance (ties by name).
    pub fn nearest(&self, name: &str, k: usize) -> Vec<String> {
        nearest_names(name, self.types.keys().map(String::as_str), k)
    }
}

/// The `k` candidates closest to `name` (Levenshtein distance, then name).
pub fn nearest_names<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
    k: usize,
) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let mut scored: Vec<(usize, &str)> = candidates
        .map(|c| (levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(k)
        .map(|(_, c)| c.to_string())
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Inputs of the max-pods calculator (`max-pods-calculator.sh`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaxPodsQuery {
    pub prefix_delegation: bool,
    pub custom_networking: bool,
    /// The CNI's `MAX_ENI`.
    pub max_eni: Option<u32>,
    /// Overrides (or supplies) the vCPU count used for the 110/250 cap.
    pub vcpus: Option<u32>,
    /// Print the raw maximum, without the 110/250 cap.
    pub show_max_allowed: bool,
}

/// The calculator's answer and how it got there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MaxPods {
    pub instance_type: String,
    pub max_pods: u32,
    /// The uncapped formula value.
    pub max_allowed: u32,
    pub enis_for_pods: u32,
    pub ipv4_per_eni: u32,
    /// `prefix_delegation` or `secondary_ip`: the formula actually used.
    pub mode: &'static str,
    /// The 110 or 250 cap applied, if any.
    pub cap: Option<u32>,
    /// Why the PD formula was not used although asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The EKS max-pods calculator: `MAX_ENI` limits the ENIs, custom networking
/// takes one away, the PD formula applies on Nitro or bare metal only, and
/// the result is capped at 110 (250 above 30 vCPUs) unless
/// `show_max_allowed`.
pub fn max_pods(t: &InstanceType, q: &MaxPodsQuery) -> Result<MaxPods, CatalogError> {
    let mut enis = q.max_eni.map_or(t.enis, |m| m.min(t.enis));
    if q.custom_networking {
        enis = enis.saturating_sub(1);
    }
    let slots = t.slots_per_eni();
    let pd = q.prefix_delegation && t.supports_prefix_delegation();
    let raw = if pd {
        enis * slots * 16 + 2
    } else {
        enis * slots + 2
    };
    let note = (q.prefix_delegation && !pd).then(|| {
        format!(
            "{} is not Nitro or bare metal (hypervisor {:?}): prefix delegation is not available, the CNI falls back to secondary-IP mode",
            t.name, t.hypervisor
        )
    });
    let (max, cap) = if q.show_max_allowed {
        (raw, None)
    } else {
        let vcpu = q
            .vcpus
            .or(t.vcpu)
            .ok_or_else(|| CatalogError::UnknownVcpu(t.name.clone()))?;
        let cap = if vcpu > 30 { 250 } else { 110 };
        (raw.min(cap), Some(cap))
    };
    Ok(MaxPods {
        instance_type: t.name.clone(),
        max_pods: max,
        max_allowed: raw,
        enis_for_pods: enis,
        ipv4_per_eni: t.ipv4_per_eni,
        mode: if pd {
            "prefix_delegation"
        } else {
            "secondary_ip"
        },
        cap,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp(name: &str, q: MaxPodsQuery) -> u32 {
        max_pods(Catalog::embedded().get(name).unwrap(), &q)
            .unwrap()
            .max_pods
    }

    #[test]
    fn embedded_catalogue_is_whole() {
        let c = Catalog::embedded();
        assert_eq!(c.len(), 1391);
        let m5 = c.get("m5.large").unwrap();
        assert_eq!((m5.enis, m5.ipv4_per_eni), (3, 10));
        // The CSV README: eni-max-pods equals the formula for every row; the
        // calculator with --show-max-allowed and no PD must agree with it.
        for t in c.iter() {
            let q = MaxPodsQuery {
                show_max_allowed: true,
                ..Default::default()
            };
            assert_eq!(
                max_pods(t, &q).unwrap().max_pods,
                t.eni_max_pods(),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn seed_tables_corrected() {
        let sec = MaxPodsQuery::default();
        let pd = MaxPodsQuery {
            prefix_delegation: true,
            ..Default::default()
        };
        // Seed 001's table (right).
        assert_eq!(mp("t3.medium", sec), 17);
        assert_eq!(mp("t3.medium", pd), 110, "t3 is Nitro (seed 004 is wrong)");
        assert_eq!(mp("m5.large", sec), 29);
        assert_eq!(mp("m5.large", pd), 110);
        assert_eq!(mp("c5.xlarge", sec), 58);
        assert_eq!(mp("m5.4xlarge", sec), 110, "16 vCPUs: 234 capped at 110");
        assert_eq!(
            mp(
                "m5.4xlarge",
                MaxPodsQuery {
                    show_max_allowed: true,
                    ..sec
                }
            ),
            234
        );
        // Seed 000 error: m5.xlarge has 4 ENIs, so 58, not 44.
        assert_eq!(mp("m5.xlarge", sec), 58);
        // Seed 004 error: m5.xlarge PD raw is 4*14*16+2 = 898, not 4*15*16+2.
        assert_eq!(
            mp(
                "m5.xlarge",
                MaxPodsQuery {
                    show_max_allowed: true,
                    ..pd
                }
            ),
            898
        );
        assert_eq!(mp("c5.18xlarge", pd), 250);
    }

    #[test]
    fn xen_falls_back_and_knobs_apply() {
        let c = Catalog::embedded();
        let t2 = c.get("t2.medium").unwrap();
        let r = max_pods(
            t2,
            &MaxPodsQuery {
                prefix_delegation: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.mode, "secondary_ip");
        assert!(r.note.is_some());
        assert_eq!(r.max_pods, t2.eni_max_pods());
        // Custom networking: one ENI less. MAX_ENI applies first.
        let m5 = c.get("m5.large").unwrap();
        let q = MaxPodsQuery {
            custom_networking: true,
            ..Default::default()
        };
        assert_eq!(max_pods(m5, &q).unwrap().max_pods, 2 * 9 + 2);
        let q = MaxPodsQuery {
            custom_networking: true,
            max_eni: Some(2),
            ..Default::default()
        };
        assert_eq!(max_pods(m5, &q).unwrap().max_pods, 9 + 2);
    }

    #[test]
    fn unknown_type_suggests_nearest() {
        let err = Catalog::embedded().get("m5.larg").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("nearest: m5.large"), "{msg}");
    }
}
