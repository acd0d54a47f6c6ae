//! Styles, in colour or (with `NO_COLOR`) with no colour at all: then only bold and
//! reverse video set things apart.

use ratatui::style::{Color, Modifier, Style};

use petit_client::vocab::Tone;

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

    /// The style of a tone of the vocabulary (a status, a trigger, an event type).
    pub fn tone(self, tone: Tone) -> Style {
        match tone {
            Tone::Good => self.good(),
            Tone::Bad => self.fg(Color::Red),
            Tone::Warn => self.warn(),
            Tone::Active => self.fg(Color::Cyan),
            Tone::Dim => self.dim(),
            Tone::Plain => Style::new(),
        }
    }
}
