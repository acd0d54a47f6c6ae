//! Styles, in colour or (with `NO_COLOR`) with no colour at all: then only bold and
//! reverse video set things apart.

use ratatui::style::{Color, Modifier, Style};

use crate::state::{EventKind, RunStatus, TaskStatus};

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    color: bool,
}

impl Theme {
    pub fn new(color: bool) -> Theme {
        Theme { color }
    }

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn header(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn tab(self) -> Style {
        self.fg(Color::Yellow)
            .add_modifier(Modifier::BOLD | Modifier::REVERSED)
    }

    pub fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }

    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn bar(self) -> Style {
        if self.color {
            Style::new().fg(Color::White).bg(Color::Blue)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    pub fn border(self) -> Style {
        self.fg(Color::Gray)
    }

    pub fn run(self, s: RunStatus) -> Style {
        match s {
            RunStatus::Unknown => self.dim(),
            RunStatus::Queued => self.warn(),
            RunStatus::Running => self.fg(Color::Cyan),
            RunStatus::Succeeded => self.good(),
            RunStatus::Failed | RunStatus::Interrupted => self.fg(Color::Red),
            RunStatus::Cancelled => self.warn(),
        }
    }

    pub fn task(self, s: TaskStatus) -> Style {
        match s {
            TaskStatus::Unknown | TaskStatus::Pending | TaskStatus::Skipped => self.dim(),
            TaskStatus::Running => self.fg(Color::Cyan),
            TaskStatus::Succeeded => self.good(),
            TaskStatus::Failed | TaskStatus::TimedOut | TaskStatus::Interrupted => {
                self.fg(Color::Red)
            }
            TaskStatus::Retrying | TaskStatus::Cancelled => self.warn(),
        }
    }

    pub fn event(self, kind: EventKind) -> Style {
        match kind {
            k if k.is_failure() => self.fg(Color::Red),
            EventKind::RunSucceeded | EventKind::TaskSucceeded => self.good(),
            EventKind::RunStarted | EventKind::TaskStarted => self.fg(Color::Cyan),
            EventKind::JobSkipped
            | EventKind::TaskRetrying
            | EventKind::RunCancelled
            | EventKind::TaskCancelled
            | EventKind::SchedulerPaused => self.warn(),
            _ => Style::new(),
        }
    }
}
