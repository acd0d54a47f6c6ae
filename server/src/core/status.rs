//! Run and task statuses, trigger reasons, log streams, and their stable string forms
//! (used in the database and in messages).

use std::fmt;
use std::str::FromStr;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The stable lowercase name, as stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$variant),)+
                    other => Err(format!("unknown {} '{}'", stringify!($name), other)),
                }
            }
        }
    };
}

string_enum!(
    /// The state of one run of a job.
    RunStatus {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Interrupted => "interrupted",
    }
);

impl RunStatus {
    /// Whether the run has ended (no further change will happen).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Interrupted
        )
    }
}

string_enum!(
    /// The state of one task in a run.
    TaskStatus {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
        Retrying => "retrying",
        TimedOut => "timed_out",
        Cancelled => "cancelled",
        Interrupted => "interrupted",
    }
);

impl TaskStatus {
    /// Whether the task has settled for this run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::TimedOut | Self::Cancelled
        )
    }
}

string_enum!(
    /// Why a run started.
    TriggerReason {
        Schedule => "schedule",
        Manual => "manual",
        Backfill => "backfill",
        Catchup => "catchup",
        Retry => "retry",
    }
);

string_enum!(
    /// Which output stream a log line came from.
    LogStream {
        Stdout => "stdout",
        Stderr => "stderr",
    }
);
