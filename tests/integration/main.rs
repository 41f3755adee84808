//! Integration tests: lapin (and a raw-frame client) against a broker over TCP. By default an
//! in-process Warren; set WARREN_TEST_AMQP_URL to run the same tests against another broker
//! (RabbitMQ 3.10.8 is the referee). Warren-only extensions are skipped there.

mod common;

mod access;
mod access_boot;
mod alarms;
mod arguments;
mod channels;
mod committer_model;
mod confirms;
mod consistent_hash;
mod consumers;
mod content;
mod dead_letters;
mod dedup;
mod deep_queues;
mod delayed;
mod durability;
mod errors;
mod exchanges;
mod federation;
mod file_store_model;
mod firehose;
mod handshake;
mod hostile;
mod layers;
mod limits;
mod max_length;
mod mgmt;
mod mgmt_channels;
mod mgmt_endpoints;
mod mgmt_rates;
mod parameters;
mod persistence;
mod policies;
mod process;
mod prometheus;
mod queues;
mod quorum;
mod routing;
mod routing_model;
mod shovels;
mod spill;
mod store_model;
mod streams;
mod test_clock;
mod testing_helpers;
mod tls;
mod ttl;
mod tx;
mod wire;
