# Build stage: compile the release binary (migrations and SQLite are built in).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked --bin vodhook

# Runtime stage: just the binary, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 vodhook \
 && mkdir -p /var/lib/vodhook \
 && chown vodhook /var/lib/vodhook
COPY --from=build /src/target/release/vodhook /usr/local/bin/vodhook
USER vodhook
# Without DATABASE_URL, vodhook keeps its SQLite database in the data directory: mount a volume there.
ENV VODHOOK_LISTEN=0.0.0.0:8080 \
    VODHOOK_LOG_FORMAT=json \
    VODHOOK_DATA_DIR=/var/lib/vodhook
VOLUME /var/lib/vodhook
EXPOSE 8080
ENTRYPOINT ["vodhook"]
CMD ["serve"]
