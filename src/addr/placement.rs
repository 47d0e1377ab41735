//! Where EC2 puts an automatic address or prefix. EC2 does not document it
//! (docs/sources.md §1): single addresses are reported to land at random
//! (CNI issue #2313), so `random` is the default for both; `lowest` is there
//! to bound the problem from the other side (a perfectly packing allocator).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::idset::IdSet;

/// A placement policy over the candidate set(s) a subnet maintains.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Uniformly random among the candidates.
    #[default]
    Random,
    /// The lowest candidate address or block.
    Lowest,
}

impl Placement {
    /// Chooses from the union of `a` and `b` (disjoint sets). Draws exactly
    /// one random number under `Random` when a candidate exists, none under
    /// `Lowest`, so other users of the same stream are not shifted by policy
    /// internals.
    pub fn choose<R: Rng + ?Sized>(self, a: &IdSet, b: Option<&IdSet>, rng: &mut R) -> Option<u32> {
        let blen = b.map_or(0, IdSet::len);
        let total = a.len() + blen;
        if total == 0 {
            return None;
        }
        match self {
            Placement::Random => {
                let i = rng.gen_range(0..total);
                Some(if i < a.len() {
                    a.nth(i)
                } else {
                    b.expect("b non-empty").nth(i - a.len())
                })
            }
            Placement::Lowest => match (a.min(), b.and_then(IdSet::min)) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Placement::Random => "random",
            Placement::Lowest => "lowest",
        }
    }
}
