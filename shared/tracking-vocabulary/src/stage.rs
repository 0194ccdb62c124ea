//! The normalised stages every source's status maps to, and the forward-only rule.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a shipment is, in one vocabulary for every carrier and partner.
///
/// `Exception` is not a position on the way: it says something went wrong (a scan error,
/// an address problem) and is recorded beside the shipment's stage, never replacing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    InfoReceived,
    PickedUp,
    InTransit,
    AtBranch,
    OutForDelivery,
    Delivered,
    Returned,
    Exception,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::InfoReceived,
        Stage::PickedUp,
        Stage::InTransit,
        Stage::AtBranch,
        Stage::OutForDelivery,
        Stage::Delivered,
        Stage::Returned,
        Stage::Exception,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::InfoReceived => "info_received",
            Stage::PickedUp => "picked_up",
            Stage::InTransit => "in_transit",
            Stage::AtBranch => "at_branch",
            Stage::OutForDelivery => "out_for_delivery",
            Stage::Delivered => "delivered",
            Stage::Returned => "returned",
            Stage::Exception => "exception",
        }
    }

    /// Position on the way; `None` for `Exception`. `InTransit` and `AtBranch` share a rank:
    /// a parcel crossing several hubs alternates between them, and both are progress.
    pub fn rank(self) -> Option<u8> {
        match self {
            Stage::InfoReceived => Some(1),
            Stage::PickedUp => Some(2),
            Stage::InTransit | Stage::AtBranch => Some(3),
            Stage::OutForDelivery => Some(4),
            Stage::Delivered | Stage::Returned => Some(5),
            Stage::Exception => None,
        }
    }

    /// Nothing moves a shipment out of a terminal stage.
    pub fn is_terminal(self) -> bool {
        matches!(self, Stage::Delivered | Stage::Returned)
    }

    /// What an event with stage `self` does to a shipment currently at `current`.
    pub fn progress_from(self, current: Option<Stage>) -> Progress {
        let Some(next_rank) = self.rank() else {
            return Progress::Flag;
        };
        let Some(current) = current else {
            return Progress::Advance;
        };
        if current.is_terminal() {
            return if current == self {
                Progress::Same
            } else {
                Progress::AfterTerminal
            };
        }
        match current.rank() {
            Some(rank) if next_rank < rank => Progress::Backwards,
            _ if current == self => Progress::Same,
            _ => Progress::Advance,
        }
    }
}

/// The verdict of the forward-only rule. Every event is recorded; only `Advance` moves the
/// shipment's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Further on (or sideways between hubs): the shipment takes the new stage.
    Advance,
    /// The stage the shipment is already at: recorded, nothing changes.
    Same,
    /// Behind the current stage (a late scan): recorded, not applied.
    Backwards,
    /// The shipment was already delivered or returned: recorded, not applied.
    AfterTerminal,
    /// An exception: recorded and flagged on the shipment, the stage stays.
    Flag,
}

impl Progress {
    pub fn applies(self) -> bool {
        matches!(self, Progress::Advance)
    }

    /// Why an event was recorded but not applied (`None` when it was applied).
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Progress::Advance => None,
            Progress::Same => Some("same_stage"),
            Progress::Backwards => Some("backwards"),
            Progress::AfterTerminal => Some("after_terminal"),
            Progress::Flag => Some("exception"),
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown tracking stage {0:?} (known: info_received, picked_up, in_transit, at_branch, out_for_delivery, delivered, returned, exception)")]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| UnknownStage(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert!("Delivered".parse::<Stage>().is_err());
    }

    #[test]
    fn a_late_in_transit_after_delivered_is_recorded_not_applied() {
        assert_eq!(
            Stage::InTransit.progress_from(Some(Stage::Delivered)),
            Progress::AfterTerminal
        );
        assert_eq!(
            Stage::Returned.progress_from(Some(Stage::Delivered)),
            Progress::AfterTerminal
        );
        assert_eq!(
            Stage::Delivered.progress_from(Some(Stage::Delivered)),
            Progress::Same
        );
    }

    #[test]
    fn hubs_alternate_forward_and_late_scans_do_not_move_back() {
        assert_eq!(
            Stage::AtBranch.progress_from(Some(Stage::InTransit)),
            Progress::Advance
        );
        assert_eq!(
            Stage::InTransit.progress_from(Some(Stage::AtBranch)),
            Progress::Advance
        );
        assert_eq!(
            Stage::PickedUp.progress_from(Some(Stage::OutForDelivery)),
            Progress::Backwards
        );
        assert_eq!(Stage::Delivered.progress_from(None), Progress::Advance);
        assert_eq!(
            Stage::Exception.progress_from(Some(Stage::InTransit)),
            Progress::Flag
        );
    }

    #[test]
    fn only_advance_applies() {
        for current in Stage::ALL.map(Some).into_iter().chain([None]) {
            for next in Stage::ALL {
                let verdict = next.progress_from(current);
                assert_eq!(verdict.applies(), verdict.reason().is_none());
                if verdict.applies() {
                    // Applying never lowers the rank and never leaves a terminal stage.
                    let from = current.and_then(Stage::rank).unwrap_or(0);
                    assert!(next.rank().is_some_and(|rank| rank >= from));
                    assert!(!current.is_some_and(Stage::is_terminal));
                }
            }
        }
    }
}
