# volsync-dr's image: built with the pinned toolchain, run from distroless as a non-root user
# (UID 65532), matching the Deployment's Pod Security "restricted" settings.
#   docker build -t ghcr.io/volsync-dr/volsync-dr:0.1.0 .
FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY tests/testkit/Cargo.toml tests/testkit/Cargo.toml
RUN mkdir -p src tests/testkit/src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/testkit/src/lib.rs \
    && for b in protect webhook actions policy real; do echo 'fn main() {}' > benches/$b.rs; done \
    && cargo build --release --locked --bin volsync-dr \
    && rm -rf src tests/testkit/src benches
COPY src src
COPY tests/testkit tests/testkit
COPY benches benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin volsync-dr

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/volsync-dr /usr/local/bin/volsync-dr
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/volsync-dr"]
CMD ["run"]
