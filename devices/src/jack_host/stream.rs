//! A running JACK stream: the active client, started on `play()`.
//!
//! Building a stream registers the ports, activates the client (its process callback
//! plays silence and calls nothing until `play()`), and makes the connections
//! ([`super::client::connect`]). Dropping it deactivates and closes the client, which
//! removes its ports and their connections.

use std::fmt;
use std::sync::Arc;

use cpal::{
    traits::StreamTrait, Data, Error, ErrorKind, FrameCount, InputCallbackInfo, OutputCallbackInfo,
    StreamInstant,
};
use jack::{AsyncClient, Client};

use super::{
    client,
    process::{error_sink, Capture, InputProcess, Notifications, OutputProcess, Playback, Shared},
    Connect,
};
use crate::Direction;

/// The active client, whatever its callbacks' types.
trait Active: Send + Sync {
    fn client(&self) -> &Client;
}

impl<N, P> Active for AsyncClient<N, P>
where
    N: Send + Sync,
    P: Send,
{
    fn client(&self) -> &Client {
        self.as_client()
    }
}

/// A JACK stream. Dropping it closes its client.
pub struct JackStream {
    active: Box<dyn Active>,
    shared: Arc<Shared>,
}

fn failed(kind: ErrorKind) -> impl Fn(String) -> Error {
    move |m| Error::with_message(kind, m)
}

/// Full names of our ports, in channel order.
fn names<PS>(ports: &[jack::Port<PS>]) -> Result<Vec<String>, Error> {
    ports
        .iter()
        .map(|p| {
            p.name()
                .map_err(|e| Error::with_message(ErrorKind::Other, format!("JACK port name: {e}")))
        })
        .collect()
}

impl JackStream {
    /// Build an input stream of `channels` channels on `client`; returns the stream and the
    /// connections made.
    pub(super) fn input<D, E>(
        client: Client,
        channels: usize,
        connect: &Connect,
        callback: D,
        errors: E,
    ) -> Result<(Self, Vec<String>), Error>
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        let ports =
            client::register_inputs(&client, channels).map_err(failed(ErrorKind::ResourceExhausted))?;
        let ours = names(&ports)?;
        let shared = Arc::new(Shared::default());
        let rate = client.sample_rate();
        let errors = error_sink(errors);
        let process = InputProcess {
            ports,
            capture: Capture::new(channels, callback),
            shared: Arc::clone(&shared),
            rate,
            errors: Arc::clone(&errors),
        };
        let active = client
            .activate_async(Notifications { errors, rate }, process)
            .map_err(activation_failed)?;
        Self::connected(Box::new(active), shared, Direction::Input, &ours, connect)
    }

    /// Build an output stream of `channels` channels on `client`; returns the stream and
    /// the connections made.
    pub(super) fn output<D, E>(
        client: Client,
        channels: usize,
        connect: &Connect,
        callback: D,
        errors: E,
    ) -> Result<(Self, Vec<String>), Error>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        let ports =
            client::register_outputs(&client, channels).map_err(failed(ErrorKind::ResourceExhausted))?;
        let ours = names(&ports)?;
        let shared = Arc::new(Shared::default());
        let rate = client.sample_rate();
        let errors = error_sink(errors);
        let process = OutputProcess {
            ports,
            playback: Playback::new(channels, callback),
            shared: Arc::clone(&shared),
            rate,
            errors: Arc::clone(&errors),
        };
        let active = client
            .activate_async(Notifications { errors, rate }, process)
            .map_err(activation_failed)?;
        Self::connected(Box::new(active), shared, Direction::Output, &ours, connect)
    }

    /// Connect the ports of an active client; on failure the client is closed.
    fn connected(
        active: Box<dyn Active>,
        shared: Arc<Shared>,
        dir: Direction,
        ours: &[String],
        connect: &Connect,
    ) -> Result<(Self, Vec<String>), Error> {
        let made =
            client::connect(active.client(), dir, ours, connect).map_err(failed(ErrorKind::InvalidInput))?;
        Ok((Self { active, shared }, made))
    }

    /// Cycles longer than [`super::MAX_FRAMES`] frames, played as silence.
    pub fn oversized_cycles(&self) -> u64 {
        self.shared.oversized_cycles()
    }
}

impl StreamTrait for JackStream {
    fn play(&self) -> Result<(), Error> {
        self.shared.set_playing(true);
        Ok(())
    }

    fn pause(&self) -> Result<(), Error> {
        self.shared.set_playing(false);
        Ok(())
    }

    fn buffer_size(&self) -> Result<FrameCount, Error> {
        Ok(self.active.client().buffer_size())
    }

    /// JACK's clock, as the callbacks' instants.
    fn now(&self) -> StreamInstant {
        StreamInstant::from_nanos(self.active.client().time().saturating_mul(1000))
    }
}

impl fmt::Debug for JackStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JackStream")
            .field("client", &self.active.client().name())
            .field("oversized_cycles", &self.oversized_cycles())
            .finish()
    }
}

/// The error of a client JACK would not activate.
fn activation_failed(e: jack::Error) -> Error {
    Error::with_message(
        ErrorKind::DeviceNotAvailable,
        format!("cannot activate the JACK client: {e}"),
    )
}
