//! `minishop-ops`: the operator's command for the saga's topic, what kcat
//! would be for this system against any Kafka-protocol broker
//! ([`events`]): `tail` its events, live or from the start, filtered by
//! order or type, as lines or JSON; `lag` of every consumer group per
//! partition; `asyncapi` prints the events' contract (docs/asyncapi.yaml).
//! And its dead-letter topic (`<topic>.dlq`, written by [`shared::kafka::consumer`]
//! with only what can never be processed): list what is there, show one
//! letter with its error and origin, and replay one, a filtered set or all
//! of them onto their original topic with their key, headers and event id
//! unchanged. A replayed event that was already applied does nothing (every
//! consumer's inbox has its event id), so replaying twice is harmless.
//!
//! It talks to any Kafka-protocol broker; it reads the topic by assigning
//! its partitions directly (no consumer group, nothing committed), so
//! listing never disturbs anyone.

pub mod dlq;
pub mod events;
