//! The application's background tasks, owned (as mini-redis owns its connection tasks):
//! each one's handle is kept here, and `Application::run` ends and joins every one of
//! them, with a bound, after the listener stops. Nothing the application spawned for
//! itself outlives `run`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinHandle};

/// How a task learns that the application is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// It watches the shutdown signal and ends by itself (finishing what it is doing);
    /// it is aborted only if it has not ended within the bound.
    Signal,
    /// It holds nothing that must be finished (a sampler, a subscription): aborted.
    Abort,
}

struct Task {
    name: &'static str,
    stop: Stop,
    /// Tells whether it has ended, even once `join` holds the handle.
    abort: AbortHandle,
    /// Taken by `join`.
    handle: Option<JoinHandle<()>>,
}

/// The set of owned tasks (cheap to clone; clones share the set).
#[derive(Clone, Default)]
pub struct Tasks {
    tasks: Arc<Mutex<Vec<Task>>>,
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `fut` as an owned task.
    pub fn spawn(
        &self,
        name: &'static str,
        stop: Stop,
        fut: impl Future<Output = ()> + Send + 'static,
    ) {
        self.adopt(name, stop, tokio::spawn(fut));
    }

    /// Takes ownership of a task spawned elsewhere.
    pub fn adopt(&self, name: &'static str, stop: Stop, handle: JoinHandle<()>) {
        if let Ok(mut t) = self.tasks.lock() {
            t.push(Task {
                name,
                stop,
                abort: handle.abort_handle(),
                handle: Some(handle),
            });
        }
    }

    /// How many tasks were started.
    pub fn len(&self) -> usize {
        self.tasks.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// Whether none was started.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names of the tasks still running (none after `join`).
    pub fn running(&self) -> Vec<&'static str> {
        self.tasks
            .lock()
            .map(|t| {
                t.iter()
                    .filter(|t| !t.abort.is_finished())
                    .map(|t| t.name)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends every task and waits for each: `Stop::Abort` ones are aborted at once,
    /// `Stop::Signal` ones (already told through the shutdown signal) get up to `bound`
    /// in all to finish, then are aborted. Returns when every task has ended.
    pub async fn join(&self, bound: Duration) {
        let tasks: Vec<(&'static str, Stop, JoinHandle<()>)> = match self.tasks.lock() {
            Ok(mut t) => t
                .iter_mut()
                .filter_map(|t| t.handle.take().map(|h| (t.name, t.stop, h)))
                .collect(),
            Err(_) => return,
        };
        for (_, stop, h) in &tasks {
            if *stop == Stop::Abort {
                h.abort();
            }
        }
        let deadline = tokio::time::Instant::now() + bound;
        for (name, _, mut h) in tasks {
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                tracing::warn!(
                    task = name,
                    "a background task did not stop in time: aborted"
                );
                h.abort();
                let _ = h.await;
            }
        }
    }
}
