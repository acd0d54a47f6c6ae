//! Where command output goes: buffered stdout, in the chosen format, with write errors
//! (a closed pipe) returned rather than panicking as `println!` would.

use std::io::{self, BufWriter, StdoutLock, Write};

use petit_client::render::{self, ProtoMessage, Zone, ZoneChoice, Zones};

use crate::cli::Format;
use crate::exit::CliError;

pub struct Out {
    writer: BufWriter<StdoutLock<'static>>,
    pub format: Format,
    /// Whether status words get colour.
    pub color: bool,
    /// The zones tables show times in.
    pub zones: Zones,
}

impl Out {
    pub fn stdout(format: Format, zones: ZoneChoice) -> Out {
        // The viewer's zone is only looked up when some time is shown in it.
        let local = match zones {
            ZoneChoice::Utc => Zone::UTC,
            ZoneChoice::Job | ZoneChoice::Local => Zone::local(),
        };
        Out {
            writer: BufWriter::new(io::stdout().lock()),
            format,
            color: format == Format::Table && render::color_enabled(),
            zones: Zones::new(zones, local),
        }
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// One line of text.
    pub fn line(&mut self, text: impl std::fmt::Display) -> Result<(), CliError> {
        writeln!(self.writer, "{text}")?;
        Ok(())
    }

    /// Text that already ends in a newline (a rendered table), or nothing.
    pub fn text(&mut self, text: &str) -> Result<(), CliError> {
        self.writer.write_all(text.as_bytes())?;
        Ok(())
    }

    /// A message as one pretty-printed JSON document.
    pub fn json<M: ProtoMessage>(&mut self, message: &M) -> Result<(), CliError> {
        self.line(render::to_json_string(message, true)?)
    }

    /// A message as one compact JSON line (NDJSON), sent at once.
    pub fn json_line<M: ProtoMessage>(&mut self, message: &M) -> Result<(), CliError> {
        self.line(render::to_json_string(message, false)?)?;
        self.flush()
    }

    /// Sends what is buffered: after each streamed item, and at the end.
    pub fn flush(&mut self) -> Result<(), CliError> {
        self.writer.flush()?;
        Ok(())
    }
}
