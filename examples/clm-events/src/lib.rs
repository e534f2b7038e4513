//! An example cluster-manager controller: registered at the hub's `/v2/clm-controllers` with
//! its host and port, it is told over gRPC (`emco_controller::clm`, wire-compatible with
//! upstream EMCO's clm event channel) of every cluster created, updated or deleted. It keeps
//! the events in order and hands each to a callback (the binary prints JSON lines; a real
//! controller would, say, install an agent on a new cluster).

use std::sync::{Arc, Mutex};

use emco_controller::clm::clm_controller_event_channel_server::{
    ClmControllerEventChannel, ClmControllerEventChannelServer,
};
use emco_controller::clm::{
    ClmControllerEventRequest, ClmControllerEventResponse, ClmControllerEventType,
};
use tonic::{Request, Response, Status};

/// One event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    pub provider: String,
    pub cluster: String,
    /// `CLUSTER_CREATED`, `CLUSTER_UPDATED` or `CLUSTER_DELETED`.
    pub event: String,
}

type Callback = Arc<dyn Fn(&ClusterEvent) + Send + Sync>;

/// The controller: every event, in arrival order.
#[derive(Clone, Default)]
pub struct ClmEvents {
    events: Arc<Mutex<Vec<ClusterEvent>>>,
    on_event: Option<Callback>,
}

impl ClmEvents {
    /// Calls `on_event` for each event too.
    pub fn with_callback(
        mut self,
        on_event: impl Fn(&ClusterEvent) + Send + Sync + 'static,
    ) -> Self {
        self.on_event = Some(Arc::new(on_event));
        self
    }

    /// The events so far.
    pub fn events(&self) -> Vec<ClusterEvent> {
        self.events
            .lock()
            .map(|events| events.clone())
            .unwrap_or_default()
    }

    pub fn into_service(self) -> ClmControllerEventChannelServer<Self> {
        ClmControllerEventChannelServer::new(self)
    }
}

#[tonic::async_trait]
impl ClmControllerEventChannel for ClmEvents {
    async fn publish(
        &self,
        request: Request<ClmControllerEventRequest>,
    ) -> Result<Response<ClmControllerEventResponse>, Status> {
        let request = request.into_inner();
        let event = ClmControllerEventType::try_from(request.event)
            .map_err(|_| Status::invalid_argument(format!("unknown event {}", request.event)))?;
        let received = ClusterEvent {
            provider: request.provider_name.clone(),
            cluster: request.cluster_name.clone(),
            event: event.as_str_name().to_owned(),
        };
        if let Some(on_event) = &self.on_event {
            on_event(&received);
        }
        if let Ok(mut events) = self.events.lock() {
            events.push(received);
        }
        Ok(Response::new(ClmControllerEventResponse {
            provider_name: request.provider_name,
            cluster_name: request.cluster_name,
            status: true,
            message: String::new(),
        }))
    }
}

/// Serves the controller on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, controller: ClmEvents) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .add_service(controller.into_service())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
