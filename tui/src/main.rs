//! `petit-tui`: parse flags, enter the terminal, then one loop over key presses,
//! server messages and a clock tick, drawing after each change.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use petit_client::render::{Zone, ZoneChoice, Zones};
use petit_tui::state::State;
use petit_tui::term::TerminalGuard;
use petit_tui::{conn, view};

/// Server messages folded in before drawing again, so that a burst of events costs
/// one frame rather than hundreds.
const MAX_MESSAGES_PER_FRAME: usize = 256;

/// A live dashboard for petitd: jobs, runs, tasks, events and logs, over gRPC.
#[derive(Parser)]
#[command(name = "petit-tui", version, after_help = keys_help())]
struct Args {
    #[command(flatten)]
    connection: petit_client::ConnectArgs,

    /// Start with every time in UTC, next fire times included (default: a job's next fire times in the job's own zone, other times in local time; `z` switches)
    #[arg(long, conflicts_with = "local")]
    utc: bool,

    /// Start with every time in local time (TZ, else the system's zone), next fire times included
    #[arg(long)]
    local: bool,
}

impl Args {
    fn zones(&self) -> Zones {
        let choice = match (self.utc, self.local) {
            (true, _) => ZoneChoice::Utc,
            (_, true) => ZoneChoice::Local,
            _ => ZoneChoice::Job,
        };
        Zones::new(choice, Zone::local())
    }
}

fn keys_help() -> String {
    let mut text = String::from("Keys:\n");
    for (key, what) in view::KEYS {
        text.push_str(&format!("  {key:<9} {what}\n"));
    }
    text.push_str("\nColours are off when NO_COLOR is set.");
    text
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The terminal is restored before the error is printed (the guard lives in `run`).
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    // A bad address is reported before the screen is taken over.
    let client = conn::client(&args.connection)?;
    let (updates_tx, mut updates) = mpsc::channel(1024);
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut state = State::new(client.server(), color, Utc::now());
    // Zones, unlike offsets, know their DST changes: looked up once.
    state.set_zones(args.zones());
    let _conn = conn::spawn(client, updates_tx, commands_rx);

    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut guard = TerminalGuard::enter()?;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);

    loop {
        state.page_rows = view::list_rows(guard.terminal.size()?.height);
        guard.terminal.draw(|frame| view::draw(frame, &state))?;
        let command = tokio::select! {
            // Input first, so that the screen never stops answering keys.
            biased;
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) => {
                    state.set_now(Utc::now());
                    state.on_key(key)
                }
                // A resize (or anything else) just redraws.
                Some(Ok(_)) => None,
                Some(Err(err)) => return Err(err.into()),
                None => break,
            },
            Some(msg) = updates.recv() => {
                state.set_now(Utc::now());
                state.apply(msg);
                for _ in 0..MAX_MESSAGES_PER_FRAME {
                    match updates.try_recv() {
                        Ok(msg) => state.apply(msg),
                        Err(_) => break,
                    }
                }
                None
            }
            _ = tick.tick() => state.tick(Utc::now()),
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
        };
        if state.should_quit() {
            break;
        }
        if let Some(command) = command {
            // The connection task outlives this loop; a failed send means it panicked,
            // which the screen shows as a connection that never comes back.
            let _ = commands.send(command);
        }
    }
    Ok(())
}
