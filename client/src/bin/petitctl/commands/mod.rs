//! Runs one parsed command: connects, calls the RPCs it maps to, prints the result.
//! Each command returns the exit code it ends with, or the error that stopped it.

mod jobs;
mod runs;
mod scheduler;
mod view;

use clap::CommandFactory;
use clap_complete::Shell;
use petit_client::proto::Run;
use petit_client::vocab::Lifecycle;
use petit_client::{Client, ClientError};

use crate::cli::{Cli, Command, Format};
use crate::exit::{CliError, SUCCESS};
use crate::out::Out;

pub fn run(cli: Cli) -> Result<u8, CliError> {
    if let Command::Completions { shell } = cli.command {
        // Needs no server.
        let out = &mut Out::stdout(Format::Table, cli.zone_choice());
        completions(shell, out)?;
        out.flush()?;
        return Ok(SUCCESS);
    }
    // One thread is plenty for one request or stream, and starts fastest.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<u8, CliError> {
    let client = petit_client::connect(&cli.connection.options(cli.timeout)?).await?;
    let client = &client;
    let out = &mut Out::stdout(cli.command.format(), cli.zone_choice());
    let code = match cli.command {
        Command::Jobs { .. } => jobs::list(client, out).await?,
        Command::Job { job, .. } => jobs::show(client, &job, out).await?,
        Command::Trigger(args) => jobs::trigger(client, args, out).await?,
        Command::Backfill {
            job,
            from,
            to,
            dry_run,
            ..
        } => jobs::backfill(client, &job, from, to, dry_run, out).await?,
        Command::Reload { .. } => jobs::reload(client, out).await?,
        Command::Rerun { run_id, wait, .. } => jobs::rerun(client, &run_id, wait, out).await?,
        Command::Runs { job, limit, .. } => jobs::runs(client, &job, limit, out).await?,
        Command::Run { run_id, .. } => runs::show(client, &run_id, out).await?,
        Command::Tasks { run_id, .. } => runs::tasks(client, &run_id, out).await?,
        Command::Logs {
            run_id,
            task,
            follow,
            tail,
            ..
        } => {
            let task = task.as_deref().unwrap_or("");
            runs::logs(client, &run_id, task, follow, tail, out).await?
        }
        Command::Cancel { run_id, .. } => runs::cancel(client, &run_id, out).await?,
        Command::Pause { job_id: None, .. } => scheduler::pause(client, out).await?,
        Command::Resume { job_id: None, .. } => scheduler::resume(client, out).await?,
        Command::Pause {
            job_id: Some(job_id),
            ..
        } => scheduler::pause_job(client, &job_id, true, out).await?,
        Command::Resume {
            job_id: Some(job_id),
            ..
        } => scheduler::pause_job(client, &job_id, false, out).await?,
        Command::State { .. } => scheduler::state(client, out).await?,
        Command::Audit { limit, .. } => scheduler::audit(client, limit, out).await?,
        Command::Nodes { .. } => scheduler::nodes(client, out).await?,
        Command::Health { .. } => scheduler::health(client, out).await?,
        Command::Watch { job, no_logs, .. } => {
            scheduler::watch(client, job.as_deref().unwrap_or(""), no_logs, out).await?
        }
        Command::Completions { shell } => completions(shell, out)?,
    };
    out.flush()?;
    Ok(code)
}

fn completions(shell: Shell, out: &mut Out) -> Result<u8, CliError> {
    // clap_complete panics on a write error, so it writes to memory first.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "petitctl", &mut script);
    out.text(&String::from_utf8_lossy(&script))?;
    Ok(SUCCESS)
}

/// A stream that ended before what the command waits for: petitd went away.
fn stream_ended(client: &Client, what: &str) -> CliError {
    CliError::Client(ClientError::Unavailable {
        server: client.server().to_string(),
        message: format!("{what} ended early"),
    })
}

/// Waits for a run to end by watching it (no polling), and returns it as it ended.
async fn wait_run(client: &Client, run_id: &str) -> Result<Run, CliError> {
    let mut stream = client.watch_run(run_id).await?;
    while let Some(message) = stream.message().await? {
        if let Some(run) = message.run.filter(|run| run.status().is_terminal()) {
            return Ok(run);
        }
    }
    // The server ends the stream after the run's last event; ending before that means
    // it went away.
    Err(stream_ended(client, "the run's watch stream"))
}
