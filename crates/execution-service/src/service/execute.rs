//! [`ExecutionService::execute`]: one call from request to torn-down result.

use std::sync::Arc;

use orchestrator_core::{ExecOutput, IsolationReport, LimitReport, WorkspaceId};
use tracing::Instrument;

use crate::error::ServiceError;
use crate::record::{
    ExecutionId, ExecutionRecord, ExecutionRequest, ExecutionState, ResultSummary,
};

use super::guard::InFlight;
use super::routing::{Backend, DOCKER_BACKEND};
use super::start::{StartOptions, Started};
use super::ExecutionService;

/// What [`ExecutionService::execute`] returns.
#[derive(Debug, Clone)]
pub struct ExecutionResult {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The backend that ran it.
    pub backend: String,
    /// The (now removed) workspace or container.
    pub workspace_id: WorkspaceId,
    /// The command's output.
    pub output: ExecOutput,
    /// How each limit was enforced (empty when no limits were asked).
    pub limit_report: LimitReport,
    /// How the sandbox was isolated, as the backend reported it right after
    /// creating it (the record keeps it as an
    /// [`IsolationSummary`](crate::IsolationSummary)).
    pub isolation: IsolationReport,
    /// The final record (state completed).
    pub record: ExecutionRecord,
    /// Files of `files_out` that could not be copied out, with why. Every
    /// copy-out is attempted, whatever the command's status and whatever
    /// an earlier copy did; a failure does not discard the result above
    /// (the record's `error` names it too).
    pub copy_out_errors: Vec<(crate::FileTransfer, Arc<ServiceError>)>,
}

impl ExecutionResult {
    /// Whether it ran on the docker orchestrator (the backend named
    /// [`DOCKER_BACKEND`]).
    pub fn used_docker(&self) -> bool {
        self.backend == DOCKER_BACKEND
    }
}

impl ExecutionService {
    /// Submits and runs a request to the end: start (without the background
    /// command), run the command in the foreground (live output goes to the
    /// request's sink), copy the files out, complete. The sandbox is torn
    /// down whatever happens: when the command fails, when a step errors,
    /// and when the caller drops this future mid-way (a spawned task does it;
    /// [`ExecutionService::wait_for_cleanups`] waits for such tasks).
    ///
    /// A command that runs and exits non-zero is a success of `execute`
    /// (the record is completed; see `output.status`).
    pub async fn execute(
        &self,
        request: ExecutionRequest,
    ) -> Result<ExecutionResult, ServiceError> {
        let span = tracing::info_span!(
            "execute",
            execution = tracing::field::Empty,
            backend = tracing::field::Empty
        );
        let span2 = span.clone();
        async move {
            if request.command.is_empty() {
                return Err(ServiceError::InvalidRequest(
                    orchestrator_core::Error::invalid("execute needs a command"),
                ));
            }
            // Fail early, without leaving a record, on a backend that is not
            // there.
            self.route(&request.backend, false)?;
            let sink = request.output.clone();
            let id = self.submit(request).await?;
            span2.record("execution", tracing::field::display(&id));
            self.execute_inner(id, sink, &span2).await
        }
        .instrument(span)
        .await
    }

    /// [`ExecutionService::execute`] of an execution already
    /// [submitted](ExecutionService::submit) and still pending, with its
    /// live output going to `output`. For callers that must know the id
    /// before the run starts (a server answering "accepted", a queue): the
    /// same guarantees hold, and a record cancelled while it waited is
    /// [`ServiceError::InvalidState`] with nothing provisioned.
    pub async fn execute_submitted(
        &self,
        id: &ExecutionId,
        output: Option<orchestrator_core::OutputSink>,
    ) -> Result<ExecutionResult, ServiceError> {
        let span = tracing::info_span!("execute", execution = %id, backend = tracing::field::Empty);
        let span2 = span.clone();
        // No read of its own: `start` reads the record, checks that it is
        // pending and routes it; a record without a command is refused
        // after that (and its sandbox torn down).
        async move { self.execute_inner(id.clone(), output, &span2).await }
            .instrument(span)
            .await
    }

    async fn execute_inner(
        &self,
        id: ExecutionId,
        sink: Option<orchestrator_core::OutputSink>,
        span2: &tracing::Span,
    ) -> Result<ExecutionResult, ServiceError> {
        {
            let mut guard = InFlight::new(self, &id);

            let started = match self
                .start_inner(&id, &StartOptions::default(), false, &mut guard)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    guard.disarm();
                    return Err(e);
                }
            };
            let Started {
                record,
                backend,
                workspace: ws,
                limit_report,
                isolation,
            } = started;
            let orch = backend.orchestrator.clone();
            span2.record("backend", tracing::field::display(&backend.name));

            let Some(mut cmd) = record.request.command_builder() else {
                guard.disarm();
                return Err(ServiceError::InvalidRequest(
                    orchestrator_core::Error::invalid("execute needs a command"),
                ));
            };
            if let Some(sink) = sink {
                cmd = cmd.output(sink);
            }
            let cmd = match cmd.build() {
                Ok(cmd) => cmd,
                Err(e) => {
                    let res = self
                        .fail_running(&record, &backend, ServiceError::InvalidRequest(e))
                        .await;
                    guard.disarm();
                    return Err(res);
                }
            };
            let output = match orch.run_command(&ws, &cmd).await {
                Ok(o) => o,
                Err(e) => {
                    let err = ServiceError::backend("run_command", &backend.name, e);
                    let res = self.fail_running(&record, &backend, err).await;
                    guard.disarm();
                    return Err(res);
                }
            };
            tracing::info!(status = %output.status, "command ended");
            let summary = ResultSummary::from_output(&output);

            let mut copy_out_errors = Vec::new();
            for f in &record.request.files_out {
                if let Err(e) = orch.copy_from(&ws, &f.sandbox, &f.host).await {
                    tracing::warn!(sandbox = %f.sandbox, host = %f.host.display(), error = %e, "copy out failed");
                    copy_out_errors.push((
                        f.clone(),
                        Arc::new(ServiceError::backend("copy_from", &backend.name, e)),
                    ));
                }
            }
            let copy_note = (!copy_out_errors.is_empty()).then(|| {
                copy_out_errors
                    .iter()
                    .map(|(f, e)| format!("copy out of {}: {e}", f.sandbox))
                    .collect::<Vec<_>>()
                    .join("; ")
            });

            let finished = self
                .teardown_and_finish(
                    &record,
                    &backend,
                    ExecutionState::Completed,
                    Some(summary.clone()),
                    copy_note,
                )
                .await;
            let record = match finished {
                Ok(r) => r,
                Err(e @ ServiceError::Orchestrator { .. }) => {
                    // Teardown failed: record the failure with the result;
                    // `recover` retries the teardown of unreleased sandboxes.
                    let reason = e.to_string();
                    let _ = self
                        .update_with(&id, |r| {
                            if r.transition(ExecutionState::Failed).is_ok() {
                                r.error = Some(reason.clone());
                                r.result = Some(summary.clone());
                                r.sandbox_released = false;
                            }
                            Ok(())
                        })
                        .await;
                    guard.disarm();
                    return Err(e);
                }
                Err(e) => {
                    guard.disarm();
                    return Err(e);
                }
            };
            guard.disarm();
            Ok(ExecutionResult {
                execution_id: id,
                backend: backend.name,
                workspace_id: ws,
                output,
                limit_report,
                isolation,
                record,
                copy_out_errors,
            })
        }
    }

    /// A step after start failed: tear down, mark failed, return the error
    /// (or [`ServiceError::Cancelled`] if it was cancelled meanwhile).
    pub(super) async fn fail_running(
        &self,
        rec: &ExecutionRecord,
        backend: &Backend,
        err: ServiceError,
    ) -> ServiceError {
        tracing::warn!(error = %err, "execution failed; tearing down");
        let reason = err.to_string();
        match self
            .teardown_and_finish(
                rec,
                backend,
                ExecutionState::Failed,
                None,
                Some(reason.clone()),
            )
            .await
        {
            Ok(_) => err,
            Err(e @ ServiceError::Cancelled(_)) => e,
            Err(e @ ServiceError::Orchestrator { .. }) => {
                tracing::error!(error = %e, "teardown failed too");
                let _ = self
                    .update_with(&rec.id, |r| {
                        if r.transition(ExecutionState::Failed).is_ok() {
                            r.error = Some(format!("{reason}; teardown failed: {e}"));
                            r.sandbox_released = false;
                        }
                        Ok(())
                    })
                    .await;
                err
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record the failure");
                err
            }
        }
    }
}
