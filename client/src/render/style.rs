//! Colour, only where a person reads it: a terminal, with `NO_COLOR` unset. Also the
//! words (and colours) for run and task states.

use std::io::IsTerminal;

use petit_proto::v1::{RunStatus, TaskStatus};

/// The few colours status words use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Red,
    Green,
    Yellow,
    Blue,
    Cyan,
    Dim,
}

impl Color {
    fn sgr(self) -> &'static str {
        match self {
            Color::Red => "31",
            Color::Green => "32",
            Color::Yellow => "33",
            Color::Blue => "34",
            Color::Cyan => "36",
            Color::Dim => "2",
        }
    }
}

/// Whether stdout should get colour: it is a terminal, and `NO_COLOR` is unset or
/// empty (<https://no-color.org>).
pub fn color_enabled() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` wrapped in the colour's escape codes when `enabled`, else as is.
pub fn paint(text: &str, color: Color, enabled: bool) -> String {
    if enabled {
        format!("\x1b[{}m{text}\x1b[0m", color.sgr())
    } else {
        text.to_string()
    }
}

/// A state as a word and the colour it is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusWord {
    pub word: &'static str,
    pub color: Color,
}

/// "succeeded", "failed"... for a run status given as its wire number (an unknown
/// number, from a newer server, reads "unknown").
pub fn run_status(status: i32) -> StatusWord {
    let (word, color) = match RunStatus::try_from(status).unwrap_or(RunStatus::Unspecified) {
        RunStatus::Unspecified => ("unknown", Color::Dim),
        #[allow(deprecated)] // an old server's word for queued
        RunStatus::Pending | RunStatus::Queued => ("queued", Color::Yellow),
        RunStatus::Running => ("running", Color::Cyan),
        RunStatus::Succeeded => ("succeeded", Color::Green),
        RunStatus::Failed => ("failed", Color::Red),
        RunStatus::Cancelled => ("cancelled", Color::Yellow),
        RunStatus::Interrupted => ("interrupted", Color::Red),
    };
    StatusWord { word, color }
}

/// As [`run_status`], for a task status.
pub fn task_status(status: i32) -> StatusWord {
    let (word, color) = match TaskStatus::try_from(status).unwrap_or(TaskStatus::Unspecified) {
        TaskStatus::Unspecified => ("unknown", Color::Dim),
        TaskStatus::Pending => ("pending", Color::Dim),
        TaskStatus::Running => ("running", Color::Cyan),
        TaskStatus::Succeeded => ("succeeded", Color::Green),
        TaskStatus::Failed => ("failed", Color::Red),
        TaskStatus::Skipped => ("skipped", Color::Dim),
        TaskStatus::Retrying => ("retrying", Color::Yellow),
        TaskStatus::TimedOut => ("timed out", Color::Red),
        TaskStatus::Cancelled => ("cancelled", Color::Yellow),
        TaskStatus::Interrupted => ("interrupted", Color::Red),
    };
    StatusWord { word, color }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paint_only_when_enabled() {
        assert_eq!(paint("ok", Color::Green, false), "ok");
        assert_eq!(paint("ok", Color::Green, true), "\x1b[32mok\x1b[0m");
    }

    #[test]
    fn status_words() {
        let runs = [
            (RunStatus::Succeeded as i32, "succeeded", Color::Green),
            (RunStatus::Failed as i32, "failed", Color::Red),
            (RunStatus::Running as i32, "running", Color::Cyan),
            (99, "unknown", Color::Dim),
        ];
        for (status, word, color) in runs {
            assert_eq!(run_status(status), StatusWord { word, color });
        }
        let tasks = [
            (TaskStatus::TimedOut as i32, "timed out", Color::Red),
            (TaskStatus::Skipped as i32, "skipped", Color::Dim),
            (-1, "unknown", Color::Dim),
        ];
        for (status, word, color) in tasks {
            assert_eq!(task_status(status), StatusWord { word, color });
        }
    }
}
