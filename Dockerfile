# Warren in a container, for users who want one (the binary itself needs nothing installed).
# Build: docker build -t warren .      Run: docker run -p 5672:5672 -p 15672:15672 warren
# RabbitMQ's image variables work: -e RABBITMQ_DEFAULT_USER=app -e RABBITMQ_DEFAULT_PASS=secret
# (a user other than guest may log in from outside the container; guest may not, as in
# RabbitMQ). Not built by this repository's CI, which has no container daemon.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin warren --bin warrenctl

FROM debian:bookworm-slim
COPY --from=build /src/target/release/warren /src/target/release/warrenctl /usr/local/bin/
RUN mkdir -p /var/lib/warren
ENV WARREN_DATA_DIR=/var/lib/warren \
    WARREN_BIND=0.0.0.0
VOLUME /var/lib/warren
EXPOSE 5672 5671 15672 15671
# rabbitmq-diagnostics check_running, in Warren's words.
HEALTHCHECK --interval=5s --timeout=3s CMD ["warrenctl", "ping"]
# Logs as JSON lines without colour, for container log collectors.
ENTRYPOINT ["warren", "--log-format", "json"]
