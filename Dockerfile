# syntax=docker/dockerfile:1
# Build: docker build -t autoseen .
# Run:   docker run -p 8080:8080 -e AUTOSEEN__WASEND__API_KEY=... -v autoseen-data:/app/data autoseen

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
# A fixed unprivileged user; the store lives on a volume it owns.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin autoseen \
    && mkdir -p /app/data && chown 10001:10001 /app/data
WORKDIR /app
COPY --from=build /src/target/release/autoseen /usr/local/bin/autoseen
COPY config /app/config
ENV AUTOSEEN_CONFIG=/app/config
USER 10001
VOLUME /app/data
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
    CMD ["autoseen", "probe", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["autoseen"]
CMD ["serve"]
