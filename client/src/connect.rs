//! Connecting to petitd: which address forms are accepted, the channel (plain HTTP/2
//! or TLS) and its time limits, and one method per RPC so that callers get a
//! [`ClientError`] rather than a raw `tonic::Status`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use petit_proto::v1::{
    job_service_client::JobServiceClient, run_service_client::RunServiceClient,
    scheduler_service_client::SchedulerServiceClient, BackfillJobRequest, BackfillJobResponse,
    CancelRunRequest, CancelRunResponse, FollowTaskLogsRequest, FollowTaskLogsResponse,
    GetHealthRequest, GetHealthResponse, GetJobRequest, GetJobResponse, GetRunRequest,
    GetRunResponse, GetSchedulerStateRequest, GetSchedulerStateResponse, GetTaskLogsRequest,
    GetTaskLogsResponse, JobView, ListJobRunsRequest, ListJobRunsResponse, ListJobsRequest,
    ListJobsResponse, ListTaskRunsRequest, ListTaskRunsResponse, PauseJobRequest, PauseJobResponse,
    PauseSchedulerRequest, PauseSchedulerResponse, ReloadJobsRequest, ReloadJobsResponse,
    RerunRunRequest, RerunRunResponse, ResumeJobRequest, ResumeJobResponse, ResumeSchedulerRequest,
    ResumeSchedulerResponse, TriggerJobRequest, TriggerJobResponse, WatchEventsRequest,
    WatchEventsResponse, WatchRunRequest, WatchRunResponse,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::{ClientError, ConnectOptions};

/// Where petitd listens unless told otherwise (`--server`, `PETIT_SERVER`).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8565";

/// The largest page the server hands out; asking for it keeps listings to one call.
const MAX_PAGE_SIZE: u32 = 500;

/// tonic refuses messages over 4 MiB by default. A task's stored output (1 MiB per
/// stream by default, more if configured) costs several times its size once each line
/// carries its run id, task id and time, so the whole log of a chatty task can exceed
/// that.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Turns what a person typed into the URL the channel dials: `host:port` gets
/// `http://` (plain HTTP/2), a trailing `/` goes; `https://` means TLS.
pub fn normalize_server(server: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidAddress {
        address: server.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = server.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let url = match trimmed.split_once("://") {
        None => format!("http://{trimmed}"),
        Some(("http" | "https", _)) => trimmed.to_string(),
        Some(_) => return Err(invalid(EXPECTED)),
    };
    let uri: tonic::transport::Uri = url.parse().map_err(|_| invalid(EXPECTED))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(invalid("a server address has no path"));
    }
    Ok(url)
}

const EXPECTED: &str = "expected http://HOST:PORT, https://HOST:PORT or HOST:PORT";

/// Connects now, so that an unreachable server (or one whose certificate is not
/// trusted) is reported by this call rather than by the first request. The timeout
/// bounds the connection and, later, each unary call.
pub async fn connect(options: &ConnectOptions) -> Result<Client, ClientError> {
    let timeout = options.timeout;
    let url = normalize_server(&options.server)?;
    let endpoint = endpoint(&url, options)?;
    // `connect_timeout` only covers TCP; the outer limit also covers the HTTP/2
    // handshake with a peer that accepts but never answers.
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(err)) => return Err(ClientError::unreachable(&url, &err)),
        Err(_) => {
            return Err(ClientError::Timeout {
                server: url,
                after: timeout,
            })
        }
    };
    Ok(Client::new(
        channel,
        url,
        timeout,
        Credentials::of(options)?,
    ))
}

/// How often a long-lived connection pings the server, and how long a ping may go
/// unanswered before the connection counts as broken (a daemon that hangs, or a
/// network that drops packets, closes nothing).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client whose channel dials on first use and redials after a broken connection;
/// for long-lived callers (the TUI) that report connection state themselves. HTTP/2
/// keepalive pings detect a server that stops answering within about ten seconds.
pub fn connect_lazy(options: &ConnectOptions) -> Result<Client, ClientError> {
    let timeout = options.timeout;
    let url = normalize_server(&options.server)?;
    let channel = endpoint(&url, options)?
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(Client::new(
        channel,
        url,
        timeout,
        Credentials::of(options)?,
    ))
}

fn endpoint(url: &str, options: &ConnectOptions) -> Result<Endpoint, ClientError> {
    let invalid = |err: &dyn std::fmt::Display| ClientError::InvalidAddress {
        address: url.to_string(),
        reason: err.to_string(),
    };
    let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| invalid(&e))?;
    // Plain `http://` ignores the TLS settings, so that a PETIT_CA set for one server
    // does not stand in the way of a local one.
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(options.tls.client_config()?)
            .map_err(|e| ClientError::unreachable(url, &e))?;
    }
    Ok(endpoint.connect_timeout(options.timeout))
}

/// What every call carries: the `authorization` header, when a token is set.
#[derive(Clone)]
pub struct Credentials {
    header: Option<MetadataValue<Ascii>>,
}

impl Credentials {
    fn of(options: &ConnectOptions) -> Result<Credentials, ClientError> {
        let header = match &options.token {
            None => None,
            Some(token) => {
                let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.expose())
                    .parse()
                    .map_err(|_| ClientError::TokenFile {
                        path: "(PETIT_TOKEN or --token-file)".to_string(),
                        reason: "the token has characters a header cannot carry".to_string(),
                    })?;
                // Kept out of HTTP/2 header compression tables and debug output.
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Credentials { header })
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// The channel every service client uses: one HTTP/2 connection, with the credentials.
pub type Transport = InterceptedService<Channel, Credentials>;

/// A connection to petitd with a client for each service; cheap to clone (the clones
/// share one HTTP/2 connection).
#[derive(Clone)]
pub struct Client {
    server: Arc<str>,
    timeout: Duration,
    scheduler: SchedulerServiceClient<Transport>,
    jobs: JobServiceClient<Transport>,
    runs: RunServiceClient<Transport>,
}

/// Lines asked for per `GetTaskLogs` page: the server's largest (it may still end a
/// page sooner, at about 1 MiB of text).
const LOG_PAGE_SIZE: u32 = 10_000;

/// The pages of a stored log, from [`Client::log_pages`].
pub struct LogPages {
    client: Client,
    /// The request for the next page; `None` once the last page has come.
    request: Option<GetTaskLogsRequest>,
}

impl LogPages {
    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<GetTaskLogsResponse>, ClientError> {
        let Some(request) = self.request.take() else {
            return Ok(None);
        };
        let page = self.client.get_task_logs(request.clone()).await?;
        if !page.next_page_token.is_empty() {
            self.request = Some(GetTaskLogsRequest {
                page_token: page.next_page_token.clone(),
                ..request
            });
        }
        Ok(Some(page))
    }
}

/// A server stream whose failures come out as [`ClientError`].
pub struct Stream<T> {
    inner: tonic::Streaming<T>,
    server: Arc<str>,
    timeout: Duration,
}

impl<T> Stream<T> {
    /// The next message, or `None` once the server has ended the stream.
    pub async fn message(&mut self) -> Result<Option<T>, ClientError> {
        self.inner
            .message()
            .await
            .map_err(|status| ClientError::from_status(&self.server, self.timeout, status))
    }
}

impl Client {
    fn new(
        channel: Channel,
        server: String,
        timeout: Duration,
        credentials: Credentials,
    ) -> Client {
        Client {
            server: server.into(),
            timeout,
            scheduler: SchedulerServiceClient::with_interceptor(
                channel.clone(),
                credentials.clone(),
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
            jobs: JobServiceClient::with_interceptor(channel.clone(), credentials.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            runs: RunServiceClient::with_interceptor(channel, credentials)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        }
    }

    /// The URL this client dials, e.g. `http://127.0.0.1:8565`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The limit on each unary call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The raw service clients, for calls this type does not wrap.
    pub fn scheduler_service(&self) -> SchedulerServiceClient<Transport> {
        self.scheduler.clone()
    }

    pub fn job_service(&self) -> JobServiceClient<Transport> {
        self.jobs.clone()
    }

    pub fn run_service(&self) -> RunServiceClient<Transport> {
        self.runs.clone()
    }

    /// A unary request carrying the time limit; it is sent as `grpc-timeout`, which
    /// tonic's channel also enforces on this side.
    fn unary<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    async fn call<T>(
        &self,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, ClientError> {
        call.await
            .map(Response::into_inner)
            .map_err(|status| self.error(status))
    }

    async fn open<T>(
        &self,
        call: impl Future<Output = Result<Response<tonic::Streaming<T>>, Status>>,
    ) -> Result<Stream<T>, ClientError> {
        let inner = self.call(call).await?;
        Ok(Stream {
            inner,
            server: self.server.clone(),
            timeout: self.timeout,
        })
    }

    fn error(&self, status: Status) -> ClientError {
        ClientError::from_status(&self.server, self.timeout, status)
    }

    pub async fn health(&self) -> Result<GetHealthResponse, ClientError> {
        let request = self.unary(GetHealthRequest {});
        self.call(self.scheduler.clone().get_health(request)).await
    }

    pub async fn scheduler_state(&self) -> Result<GetSchedulerStateResponse, ClientError> {
        let request = self.unary(GetSchedulerStateRequest {});
        self.call(self.scheduler.clone().get_scheduler_state(request))
            .await
    }

    /// One page of the audit record, newest first (needs an admin token).
    pub async fn audit_records(
        &self,
        page_size: u32,
        page_token: String,
    ) -> Result<petit_proto::v1::ListAuditRecordsResponse, ClientError> {
        let request = self.unary(petit_proto::v1::ListAuditRecordsRequest {
            page_size,
            page_token,
        });
        self.call(self.scheduler.clone().list_audit_records(request))
            .await
    }

    /// Cluster mode: the nodes sharing the daemon's database (none alone).
    pub async fn nodes(&self) -> Result<petit_proto::v1::ListNodesResponse, ClientError> {
        let request = self.unary(petit_proto::v1::ListNodesRequest {});
        self.call(self.scheduler.clone().list_nodes(request)).await
    }

    pub async fn pause(&self) -> Result<PauseSchedulerResponse, ClientError> {
        let request = self.unary(PauseSchedulerRequest {});
        self.call(self.scheduler.clone().pause_scheduler(request))
            .await
    }

    /// Stops one job's scheduled fires (stored: survives restarts).
    pub async fn pause_job(&self, job_id: &str) -> Result<PauseJobResponse, ClientError> {
        let request = self.unary(PauseJobRequest {
            job_id: job_id.to_string(),
        });
        self.call(self.jobs.clone().pause_job(request)).await
    }

    /// Fires one job's schedule again from now on.
    pub async fn resume_job(&self, job_id: &str) -> Result<ResumeJobResponse, ClientError> {
        let request = self.unary(ResumeJobRequest {
            job_id: job_id.to_string(),
        });
        self.call(self.jobs.clone().resume_job(request)).await
    }

    pub async fn resume(&self) -> Result<ResumeSchedulerResponse, ClientError> {
        let request = self.unary(ResumeSchedulerRequest {});
        self.call(self.scheduler.clone().resume_scheduler(request))
            .await
    }

    /// The engine's snapshot, then every event (of `job_id` only, when not empty;
    /// without log lines when `exclude_logs`).
    pub async fn watch_events(
        &self,
        job_id: &str,
        exclude_logs: bool,
    ) -> Result<Stream<WatchEventsResponse>, ClientError> {
        let request = Request::new(WatchEventsRequest {
            job_id: job_id.to_string(),
            exclude_logs,
        });
        self.open(self.scheduler.clone().watch_events(request))
            .await
    }

    /// Every job in its list (BASIC) view, following pages until the last; the result
    /// reads as one page.
    pub async fn list_jobs(&self) -> Result<ListJobsResponse, ClientError> {
        self.list_jobs_in(JobView::Basic).await
    }

    /// Every job in `view` (FULL: tasks, dependencies and config too), as `list_jobs`.
    pub async fn list_jobs_in(&self, view: JobView) -> Result<ListJobsResponse, ClientError> {
        let mut all = ListJobsResponse::default();
        let mut page_token = String::new();
        loop {
            let request = self.unary(ListJobsRequest {
                page_size: MAX_PAGE_SIZE,
                page_token,
                view: view.into(),
            });
            let page = self.call(self.jobs.clone().list_jobs(request)).await?;
            all.jobs.extend(page.jobs);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    pub async fn get_job(&self, job_id: &str) -> Result<GetJobResponse, ClientError> {
        let request = self.unary(GetJobRequest {
            job_id: job_id.to_string(),
        });
        self.call(self.jobs.clone().get_job(request)).await
    }

    pub async fn trigger_job(
        &self,
        job_id: &str,
        params: HashMap<String, String>,
        force: bool,
    ) -> Result<TriggerJobResponse, ClientError> {
        let request = self.unary(TriggerJobRequest {
            job_id: job_id.to_string(),
            params,
            force,
        });
        self.call(self.jobs.clone().trigger_job(request)).await
    }

    /// Queues a run per instant of the job's schedule in `[from, to]` that has none.
    pub async fn backfill_job(
        &self,
        job_id: &str,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        dry_run: bool,
    ) -> Result<BackfillJobResponse, ClientError> {
        let timestamp = |t: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        };
        let request = self.unary(BackfillJobRequest {
            job_id: job_id.to_string(),
            from: Some(timestamp(from)),
            to: Some(timestamp(to)),
            dry_run,
        });
        self.call(self.jobs.clone().backfill_job(request)).await
    }

    /// Starts a new run of a run's job with the same params.
    pub async fn rerun_run(&self, run_id: &str) -> Result<RerunRunResponse, ClientError> {
        let request = self.unary(RerunRunRequest {
            run_id: run_id.to_string(),
        });
        self.call(self.runs.clone().rerun_run(request)).await
    }

    /// Reads the daemon's job files again.
    pub async fn reload_jobs(&self) -> Result<ReloadJobsResponse, ClientError> {
        let request = self.unary(ReloadJobsRequest {});
        self.call(self.jobs.clone().reload_jobs(request)).await
    }

    /// Up to `limit` of a job's runs, newest first, as one page.
    pub async fn list_job_runs(
        &self,
        job_id: &str,
        limit: u32,
    ) -> Result<ListJobRunsResponse, ClientError> {
        let mut all = ListJobRunsResponse::default();
        let mut page_token = String::new();
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        loop {
            let wanted = limit.saturating_sub(all.runs.len());
            let request = self.unary(ListJobRunsRequest {
                job_id: job_id.to_string(),
                page_size: u32::try_from(wanted)
                    .unwrap_or(MAX_PAGE_SIZE)
                    .min(MAX_PAGE_SIZE),
                page_token,
            });
            let page = self.call(self.jobs.clone().list_job_runs(request)).await?;
            let got = page.runs.len();
            all.runs.extend(page.runs);
            // An empty page with a token would loop forever on a confused server.
            if all.runs.len() >= limit || page.next_page_token.is_empty() || got == 0 {
                all.runs.truncate(limit);
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    pub async fn get_run(&self, run_id: &str) -> Result<GetRunResponse, ClientError> {
        let request = self.unary(GetRunRequest {
            run_id: run_id.to_string(),
        });
        self.call(self.runs.clone().get_run(request)).await
    }

    pub async fn list_task_runs(&self, run_id: &str) -> Result<ListTaskRunsResponse, ClientError> {
        let request = self.unary(ListTaskRunsRequest {
            run_id: run_id.to_string(),
        });
        self.call(self.runs.clone().list_task_runs(request)).await
    }

    pub async fn cancel_run(&self, run_id: &str) -> Result<CancelRunResponse, ClientError> {
        let request = self.unary(CancelRunRequest {
            run_id: run_id.to_string(),
        });
        self.call(self.runs.clone().cancel_run(request)).await
    }

    /// The run and all its task runs, then each change, ending when the run ends.
    pub async fn watch_run(&self, run_id: &str) -> Result<Stream<WatchRunResponse>, ClientError> {
        let request = Request::new(WatchRunRequest {
            run_id: run_id.to_string(),
        });
        self.open(self.runs.clone().watch_run(request)).await
    }

    /// One page of the stored output of one task, or of every task when `task_id` is
    /// empty; [`Client::log_pages`] reads them all.
    pub async fn get_task_logs(
        &self,
        request: GetTaskLogsRequest,
    ) -> Result<GetTaskLogsResponse, ClientError> {
        let request = self.unary(request);
        self.call(self.runs.clone().get_task_logs(request)).await
    }

    /// The stored output of one task (or of every task when `task_id` is empty), or
    /// its last `tail` lines when `tail` is not 0, as pages read one at a time: the
    /// next page is asked for when the caller wants it, so a long log is never whole
    /// in memory on either side.
    pub fn log_pages(&self, run_id: &str, task_id: &str, tail: u32) -> LogPages {
        LogPages {
            client: self.clone(),
            request: Some(GetTaskLogsRequest {
                run_id: run_id.to_string(),
                task_id: task_id.to_string(),
                page_size: LOG_PAGE_SIZE,
                page_token: String::new(),
                tail,
            }),
        }
    }

    /// Stored output (its last `tail` lines when `tail` is not 0, which needs a task),
    /// then live lines until the task (or, with an empty `task_id`, the run) ends.
    pub async fn follow_task_logs(
        &self,
        run_id: &str,
        task_id: &str,
        tail: u32,
    ) -> Result<Stream<FollowTaskLogsResponse>, ClientError> {
        let request = Request::new(FollowTaskLogsRequest {
            run_id: run_id.to_string(),
            task_id: task_id.to_string(),
            tail,
        });
        self.open(self.runs.clone().follow_task_logs(request)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        let cases = [
            ("http://127.0.0.1:8565", Ok("http://127.0.0.1:8565")),
            ("127.0.0.1:8565", Ok("http://127.0.0.1:8565")),
            ("localhost:9000/", Ok("http://localhost:9000")),
            (" http://[::1]:8565 ", Ok("http://[::1]:8565")),
            ("", Err("invalid server address '': it is empty")),
            ("https://x:1", Ok("https://x:1")),
            ("https://petit.example.com:8565/", Ok("https://petit.example.com:8565")),
            (
                "ftp://x:1",
                Err("invalid server address 'ftp://x:1': expected http://HOST:PORT, https://HOST:PORT or HOST:PORT"),
            ),
            (
                "http://x:1/api",
                Err("invalid server address 'http://x:1/api': a server address has no path"),
            ),
        ];
        for (input, want) in cases {
            let got = normalize_server(input).map_err(|e| e.to_string());
            assert_eq!(
                got.as_deref(),
                want.map_err(str::to_string).as_deref(),
                "{input:?}"
            );
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn refused_connection_is_unreachable() {
        // Bind then drop: nothing listens on that port for the instant of the test.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind");
        let options = ConnectOptions::new(format!("127.0.0.1:{port}"), Duration::from_secs(5));
        let err = match connect(&options).await {
            Ok(_) => panic!("connected to a closed port"),
            Err(err) => err,
        };
        assert_eq!(
            err.to_string(),
            format!("cannot reach petitd at http://127.0.0.1:{port}: connection refused")
        );
        assert!(err.is_connection() && !err.is_fatal());
    }
}
