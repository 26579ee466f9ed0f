# Two stages: the Rust toolchain builds, and only the binary ships, on a
# slim base, as an unprivileged user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/twofa-bridge

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin twofa
COPY --from=build /src/target/release/twofa-bridge /usr/local/bin/twofa-bridge
USER twofa
ENV TWOFA_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["twofa-bridge"]
CMD ["serve"]
