//! ipamd's pool decisions as pure functions of the datastore's counts, one
//! per function of the CNI's `pkg/ipamd/ipamd.go` (v1.23), so each can be
//! read against the source and tested on its own.
//!
//! Units: in prefix-delegation mode a "cidr" is a /28 prefix (16 addresses),
//! in secondary-IP mode a single address.

use super::config::CniConfig;

/// Addresses in a prefix.
pub const IPS_PER_PREFIX: u32 = 16;

/// What a decision needs to know about one node's datastore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Addresses in the pool (`TotalIPs`): 16 per prefix, or secondaries.
    pub total: u32,
    /// Addresses assigned to pods (`AssignedIPs`).
    pub assigned: u32,
    /// Prefixes (or secondary addresses) held.
    pub cidrs: u32,
    /// Prefixes with no pod address assigned (`GetFreePrefixes`).
    pub free_prefixes: u32,
}

impl PoolStats {
    /// `AvailableAddresses()`: addresses in cool-down count as available.
    pub fn available(&self) -> u32 {
        self.total - self.assigned
    }
}

/// The node-level constants a decision uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLimits {
    /// Prefix delegation in force (asked for and the type supports it).
    pub pd: bool,
    /// Slots per ENI (`IPv4 per ENI - 1`): `maxPrefixesPerENI` in PD,
    /// `maxIPsPerENI` in secondary-IP mode.
    pub slots_per_eni: u32,
    /// The kubelet's max pods.
    pub max_pods: u32,
}

impl NodeLimits {
    /// `c.maxIPsPerENI`: addresses one full ENI provides.
    pub fn max_ips_per_eni(&self) -> u32 {
        if self.pd {
            self.slots_per_eni * IPS_PER_PREFIX
        } else {
            self.slots_per_eni
        }
    }
}

/// `datastoreTargetState`: how many cidrs the pool is short of and over the
/// IP targets, or `None` when no IP target is defined.
pub fn target_state(cfg: &CniConfig, lim: &NodeLimits, s: &PoolStats) -> Option<(u32, u32)> {
    if !cfg.ip_targets_defined() {
        return None;
    }
    let (warm, min) = (cfg.warm_ip() as i64, cfg.min_ip() as i64);
    let available = s.available() as i64;
    let total = s.total as i64;
    let short = (warm - available).max(0).max(min - total);
    let over = (available - warm).max(0).min(total - min).max(0);
    if lim.pd {
        let short_prefixes = (short.max(0) as u32).div_ceil(IPS_PER_PREFIX);
        let needed_for_warm = (s.assigned + cfg.warm_ip()).div_ceil(IPS_PER_PREFIX) as i64;
        let needed_for_min = cfg.min_ip().div_ceil(IPS_PER_PREFIX) as i64;
        let prefixes = s.cidrs as i64;
        let over_prefixes = (s.free_prefixes as i64)
            .min(prefixes - needed_for_warm)
            .max(0)
            .min(prefixes - needed_for_min)
            .max(0);
        Some((short_prefixes, over_prefixes as u32))
    } else {
        Some((short.max(0) as u32, over as u32))
    }
}

/// `isDatastorePoolTooLow`.
pub fn is_low(cfg: &CniConfig, lim: &NodeLimits, s: &PoolStats) -> bool {
    if s.total >= lim.max_pods {
        return false;
    }
    if let Some((short, _)) = target_state(cfg, lim, s) {
        return short > 0;
    }
    let (warm, per) = if lim.pd {
        (cfg.warm_prefix_target, IPS_PER_PREFIX)
    } else {
        (cfg.warm_eni_target, lim.max_ips_per_eni())
    };
    let available = s.available();
    available < per * warm || (warm == 0 && available == 0)
}

/// `isDatastorePoolTooHigh`.
pub fn is_high(cfg: &CniConfig, lim: &NodeLimits, s: &PoolStats) -> bool {
    if let Some((_, over)) = target_state(cfg, lim, s) {
        return over > 0;
    }
    lim.pd && s.free_prefixes > cfg.warm_prefix_target
}

/// How many cidrs a decrease releases (`tryUnassignCidrsFromAll`): the IP
/// targets' `over`, else free prefixes beyond `WARM_PREFIX_TARGET`.
pub fn over_count(cfg: &CniConfig, lim: &NodeLimits, s: &PoolStats) -> u32 {
    match target_state(cfg, lim, s) {
        Some((_, over)) => over,
        None if lim.pd => s.free_prefixes.saturating_sub(cfg.warm_prefix_target),
        None => 0,
    }
}

/// `getPrefixesNeeded` (PD): at least 1; the IP targets' shortfall, else
/// `WARM_PREFIX_TARGET - free prefixes`.
pub fn prefixes_needed(cfg: &CniConfig, lim: &NodeLimits, s: &PoolStats) -> u32 {
    match target_state(cfg, lim, s) {
        Some((short, _)) => short.max(1),
        None => cfg
            .warm_prefix_target
            .saturating_sub(s.free_prefixes)
            .max(1),
    }
}

/// Secondary-IP mode: how many addresses to ask for (`tryAssignIPs`): a
/// whole ENI's worth, or the IP targets' shortfall.
pub fn ips_needed(cfg: &CniConfig, lim: &NodeLimits, s: &PoolStats) -> u32 {
    match target_state(cfg, lim, s) {
        Some((short, _)) => short,
        None => lim.max_ips_per_eni(),
    }
}

/// Cidrs to request on an ENI that has `free_slots` left
/// (`min(slots left, needed)`).
pub fn request_size(cfg: &CniConfig, lim: &NodeLimits, s: &PoolStats, free_slots: u32) -> u32 {
    let needed = if lim.pd {
        prefixes_needed(cfg, lim, s)
    } else {
        ips_needed(cfg, lim, s)
    };
    needed.min(free_slots)
}

/// `shouldRemoveExtraENIs`: whether to look for an ENI to free.
/// `freeable_eni_exists` is the datastore's `CheckFreeableENIexists`.
pub fn should_remove_extra_enis(
    cfg: &CniConfig,
    lim: &NodeLimits,
    s: &PoolStats,
    freeable_eni_exists: bool,
) -> bool {
    if cfg.ip_targets_defined() {
        return true;
    }
    let warm = if lim.pd {
        cfg.warm_prefix_target
    } else {
        cfg.warm_eni_target
    } + 1;
    if s.available() >= warm * lim.max_ips_per_eni() {
        return true;
    }
    lim.pd && freeable_eni_exists
}

/// The datastore's "is this ENI needed for the targets" checks
/// (`isRequiredForWarmIPTarget`, `isRequiredForMinimumIPTarget`,
/// `isRequiredForWarmPrefixTarget`), given what the *other* ENIs hold. In
/// PD both IP targets are rounded up to whole prefixes.
pub fn eni_required(
    cfg: &CniConfig,
    lim: &NodeLimits,
    other_available: u32,
    other_total: u32,
    other_free_prefixes: u32,
) -> bool {
    let mut warm = cfg.warm_ip();
    if warm != 0 {
        // In PD the target is rounded up to whole prefixes for this test.
        if lim.pd {
            warm = warm.div_ceil(IPS_PER_PREFIX) * IPS_PER_PREFIX;
        }
        if other_available < warm {
            return true;
        }
    }
    let mut min = cfg.min_ip();
    if min != 0 {
        if lim.pd {
            min = min.div_ceil(IPS_PER_PREFIX) * IPS_PER_PREFIX;
        }
        if other_total < min {
            return true;
        }
    }
    lim.pd && cfg.warm_prefix_target != 0 && other_free_prefixes < cfg.warm_prefix_target
}

/// The `kubernetes.io/role/cni` tag (`subnetDiscoveryTagKey`).
pub const CNI_ROLE_TAG: &str = "kubernetes.io/role/cni";
/// Prefix of the cluster tags (`clusterTagKeyPrefix`).
pub const CLUSTER_TAG_PREFIX: &str = "kubernetes.io/cluster/";

/// `isSubnetValidForENICreation` (pkg/awsutils/awsutils.go): may ipamd
/// create an ENI in this subnet? `role/cni=0` always excludes; untagged, only
/// the node's own subnet is used; tagged with any other value, the subnet is
/// used unless cluster tags name other clusters only
/// (`ValidSubnetTagsMatchingClusterName`, only with `CLUSTER_NAME` set).
pub fn subnet_valid_for_eni<'a>(
    tags: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    is_node_subnet: bool,
    cluster_name: Option<&str>,
) -> bool {
    let role = tags
        .clone()
        .find(|(k, _)| *k == CNI_ROLE_TAG)
        .map(|(_, v)| v);
    match role {
        Some("0") => false,
        // getTagValue returns "" for a missing tag and for an empty value.
        None | Some("") => is_node_subnet,
        Some(_) => match cluster_name {
            None | Some("") => true,
            Some(name) => {
                let mut has_cluster_tags = false;
                for (k, _) in tags {
                    if let Some(rest) = k.strip_prefix(CLUSTER_TAG_PREFIX) {
                        has_cluster_tags = true;
                        if rest == name {
                            return true;
                        }
                    }
                }
                !has_cluster_tags
            }
        },
    }
}

/// `IsSubnetExcluded`: a subnet tagged `role/cni=0`. Under subnet discovery
/// an ENI there is excluded from pod addresses (`excludedENIBasedOnSubnetTags`).
pub fn subnet_excluded<'a>(mut tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    tags.any(|(k, v)| k == CNI_ROLE_TAG && v == "0")
}

/// Go's map iteration (Go 1.24+ swiss tables): a map of up to 8 entries is
/// one group of 8 slots; an insert takes the lowest empty slot, a delete
/// empties its slot; a `range` starts at a uniformly random slot and wraps.
/// So the entry in slot 0 comes first unless the start falls on another
/// occupied slot: with two entries, 7 times in 8. For larger maps the model
/// widens the ring to the highest slot (close to a uniform start). Returns
/// the ring size to draw the start from.
pub fn map_ring(max_slot: u32) -> u32 {
    (max_slot + 1).max(8)
}

/// An entry's position in an iteration that starts at slot `start`.
pub fn map_order_key(slot: u32, start: u32, ring: u32) -> u32 {
    // `(slot + ring - start) % ring` without the division when both are in
    // the ring (every sandbox ranks its node's ENIs and cidrs).
    let x = slot + ring - start;
    if x < ring {
        x
    } else if x < 2 * ring {
        x - ring
    } else {
        x % ring
    }
}

/// One `range` over a Go map whose highest occupied slot is `max_slot`:
/// the start drawn once, then each entry's place in the iteration.
#[derive(Clone, Copy, Debug)]
pub struct MapRange {
    start: u32,
    ring: u32,
}

impl MapRange {
    pub fn draw<R: rand::Rng + ?Sized>(max_slot: u32, rng: &mut R) -> Self {
        let ring = map_ring(max_slot);
        MapRange {
            start: rng.gen_range(0..ring),
            ring,
        }
    }

    /// The place of the entry in `slot` (0 comes first).
    pub fn key(self, slot: u32) -> u32 {
        map_order_key(slot, self.start, self.ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_order_key_is_the_modulo() {
        for ring in 1..40u32 {
            for start in 0..ring {
                for slot in 0..3 * ring {
                    assert_eq!(
                        map_order_key(slot, start, ring),
                        (slot + ring - start) % ring
                    );
                }
            }
        }
    }

    fn pd_cfg(wp: u32, wip: Option<u32>, mip: Option<u32>) -> CniConfig {
        CniConfig {
            prefix_delegation: true,
            warm_prefix_target: wp,
            warm_ip_target: wip,
            minimum_ip_target: mip,
            ..CniConfig::default()
        }
    }

    const M5L_PD: NodeLimits = NodeLimits {
        pd: true,
        slots_per_eni: 9,
        max_pods: 110,
    };
    const M5L_SEC: NodeLimits = NodeLimits {
        pd: false,
        slots_per_eni: 9,
        max_pods: 29,
    };

    fn pd_stats(prefixes: u32, assigned: u32, free_prefixes: u32) -> PoolStats {
        PoolStats {
            total: prefixes * 16,
            assigned,
            cidrs: prefixes,
            free_prefixes,
        }
    }

    #[test]
    fn pd_warm_prefix_low_table() {
        // (W, prefixes, assigned, free prefixes) -> low?
        let rows = [
            (1, 0, 0, 0, true),   // empty pool
            (1, 1, 0, 1, false),  // 16 available
            (1, 1, 1, 0, true),   // 15 < 16
            (1, 2, 2, 0, false),  // two prefixes, one pod each: 30 available, nothing needed (§4)
            (2, 2, 2, 0, true),   // 30 < 32
            (0, 1, 15, 0, false), // W=0: only when nothing is available
            (0, 1, 16, 0, true),
            (1, 7, 110, 0, false), // 112 >= max pods 110: never grow
        ];
        for (w, p, a, f, want) in rows {
            let cfg = pd_cfg(w, None, None);
            assert_eq!(
                is_low(&cfg, &M5L_PD, &pd_stats(p, a, f)),
                want,
                "W={w} p={p} a={a}"
            );
        }
    }

    #[test]
    fn pd_prefixes_needed_table() {
        // WARM_PREFIX_TARGET: max(1, W - free prefixes).
        assert_eq!(
            prefixes_needed(&pd_cfg(1, None, None), &M5L_PD, &pd_stats(0, 0, 0)),
            1
        );
        assert_eq!(
            prefixes_needed(&pd_cfg(3, None, None), &M5L_PD, &pd_stats(1, 1, 0)),
            3
        );
        assert_eq!(
            prefixes_needed(&pd_cfg(3, None, None), &M5L_PD, &pd_stats(2, 1, 1)),
            2
        );
        // IP targets: max(1, ceil(short / 16)). Seed 003: MIN 25, WARM 5, empty -> 2.
        let c = pd_cfg(1, Some(5), Some(25));
        assert_eq!(prefixes_needed(&c, &M5L_PD, &pd_stats(0, 0, 0)), 2);
        assert!(is_low(&c, &M5L_PD, &pd_stats(0, 0, 0)));
        assert!(!is_low(&c, &M5L_PD, &pd_stats(2, 0, 2)));
        // 37 pods on 2 prefixes: short = max(5 - (-5)...) -> needs 3 prefixes in all.
        assert!(is_low(&c, &M5L_PD, &pd_stats(2, 32, 0)));
        assert_eq!(prefixes_needed(&c, &M5L_PD, &pd_stats(2, 32, 0)), 1);
        assert!(!is_low(&c, &M5L_PD, &pd_stats(3, 37, 0)));
        // Capped by the ENI's free slots.
        let c = pd_cfg(20, None, None);
        assert_eq!(request_size(&c, &M5L_PD, &pd_stats(0, 0, 0), 9), 9);
    }

    #[test]
    fn pd_over_table() {
        // W only: free prefixes beyond W.
        let c = pd_cfg(1, None, None);
        assert!(is_high(&c, &M5L_PD, &pd_stats(4, 1, 3)));
        assert_eq!(over_count(&c, &M5L_PD, &pd_stats(4, 1, 3)), 2);
        assert!(!is_high(&c, &M5L_PD, &pd_stats(2, 1, 1)));
        // IP targets: beyond ceil((assigned + WARM_IP)/16) and ceil(MIN_IP/16).
        let c = pd_cfg(1, Some(5), Some(25));
        // 3 prefixes, 5 pods, 2 free: warm needs ceil(10/16)=1, min needs 2 -> over 1.
        assert_eq!(target_state(&c, &M5L_PD, &pd_stats(3, 5, 2)), Some((0, 1)));
        // The CNI doc example: assigned 1, WARM_IP 16 -> 2 prefixes needed, none over.
        let c = pd_cfg(1, Some(16), None);
        assert_eq!(target_state(&c, &M5L_PD, &pd_stats(2, 1, 1)), Some((0, 0)));
    }

    #[test]
    fn secondary_mode_table() {
        let c = CniConfig {
            prefix_delegation: false,
            ..CniConfig::default()
        };
        let s = |total, assigned| PoolStats {
            total,
            assigned,
            cidrs: total,
            free_prefixes: 0,
        };
        // WARM_ENI_TARGET=1 keeps a whole spare ENI's worth (9 on m5.large).
        assert!(is_low(&c, &M5L_SEC, &s(0, 0)));
        assert_eq!(ips_needed(&c, &M5L_SEC, &s(0, 0)), 9);
        assert!(!is_low(&c, &M5L_SEC, &s(9, 0)));
        assert!(is_low(&c, &M5L_SEC, &s(9, 1)));
        assert!(
            !is_high(&c, &M5L_SEC, &s(18, 0)),
            "no IP targets: never too high"
        );
        assert!(should_remove_extra_enis(&c, &M5L_SEC, &s(27, 0), false));
        assert!(!should_remove_extra_enis(&c, &M5L_SEC, &s(18, 1), false));
        // WARM_IP_TARGET=3 in secondary mode: ask for the shortfall only.
        let c = CniConfig {
            prefix_delegation: false,
            warm_ip_target: Some(3),
            ..CniConfig::default()
        };
        assert_eq!(ips_needed(&c, &M5L_SEC, &s(0, 0)), 3);
        assert_eq!(target_state(&c, &M5L_SEC, &s(9, 2)), Some((0, 4)));
    }

    #[test]
    fn eni_required_table() {
        let c = pd_cfg(1, None, None);
        // Other ENIs hold no free prefix: this one is needed for W=1.
        assert!(eni_required(&c, &M5L_PD, 0, 16, 0));
        assert!(!eni_required(&c, &M5L_PD, 16, 16, 1));
        let c = pd_cfg(1, Some(5), Some(20));
        assert!(
            eni_required(&c, &M5L_PD, 4, 64, 5),
            "warm IPs elsewhere < 5"
        );
        assert!(
            eni_required(&c, &M5L_PD, 16, 16, 1),
            "min 20 rounds to 32 > 16"
        );
        assert!(!eni_required(&c, &M5L_PD, 16, 32, 1));
    }
    #[test]
    fn warm_ip_target_rounds_up_to_prefixes_for_eni_removal() {
        // WARM_IP_TARGET=5 in PD: the other ENIs must hold 16 available
        // addresses (one prefix), not 5, for this ENI to be removable.
        // (W=0 here: `getDeletableENI` also applies WARM_PREFIX_TARGET.)
        let c = pd_cfg(0, Some(5), None);
        assert!(eni_required(&c, &M5L_PD, 10, 32, 0), "10 < 16");
        assert!(!eni_required(&c, &M5L_PD, 16, 32, 0));
        // Secondary-IP mode: no rounding.
        let c = CniConfig {
            prefix_delegation: false,
            warm_ip_target: Some(5),
            ..CniConfig::default()
        };
        assert!(!eni_required(&c, &M5L_SEC, 5, 9, 0));
    }

    #[test]
    fn subnet_tags_decide_where_new_enis_go() {
        let t = |v: &[(&'static str, &'static str)]| v.to_vec();
        let ok = |tags: Vec<(&'static str, &'static str)>, own: bool, cluster: Option<&str>| {
            subnet_valid_for_eni(tags.iter().copied(), own, cluster)
        };
        // The node's own subnet: used unless tagged 0.
        assert!(ok(t(&[]), true, None));
        assert!(!ok(t(&[(CNI_ROLE_TAG, "0")]), true, None));
        assert!(ok(t(&[(CNI_ROLE_TAG, "1")]), true, None));
        // Another subnet: only when tagged, with any value but 0.
        assert!(!ok(t(&[]), false, None));
        assert!(!ok(t(&[(CNI_ROLE_TAG, "")]), false, None));
        assert!(ok(t(&[(CNI_ROLE_TAG, "1")]), false, None));
        assert!(ok(t(&[(CNI_ROLE_TAG, "shared")]), false, None));
        assert!(!ok(t(&[(CNI_ROLE_TAG, "0")]), false, None));
        // Cluster tags, with CLUSTER_NAME set.
        let mine = t(&[
            (CNI_ROLE_TAG, "1"),
            ("kubernetes.io/cluster/prod", "shared"),
        ]);
        assert!(ok(mine.clone(), false, Some("prod")));
        assert!(!ok(mine.clone(), false, Some("dev")));
        assert!(ok(mine, false, None), "no CLUSTER_NAME: not checked");
        assert!(subnet_excluded(t(&[(CNI_ROLE_TAG, "0")]).into_iter()));
        assert!(!subnet_excluded(t(&[(CNI_ROLE_TAG, "1")]).into_iter()));
    }

    #[test]
    fn go_small_map_order_favours_the_oldest_entry() {
        // Two entries in slots 0 and 1: slot 0 first for 7 of the 8 starts.
        let ring = map_ring(1);
        assert_eq!(ring, 8);
        let first_is_0 = (0..ring)
            .filter(|&start| map_order_key(0, start, ring) < map_order_key(1, start, ring))
            .count();
        assert_eq!(first_is_0, 7);
        // Three entries: slot 0 first for 6 of 8, slots 1 and 2 once each.
        let firsts: Vec<u32> = (0..8)
            .map(|start| (0..3).min_by_key(|&s| map_order_key(s, start, 8)).unwrap())
            .collect();
        assert_eq!(firsts.iter().filter(|&&s| s == 0).count(), 6);
        assert_eq!(firsts.iter().filter(|&&s| s == 1).count(), 1);
        // Past 8 entries the ring widens: every slot is a start once.
        assert_eq!(map_ring(11), 12);
    }
}
