# syntax=docker/dockerfile:1
# indexer: a static binary on distroless, as a non-root user, no shell.
#
#   docker build -t indexer --build-arg VERSION=$(git describe --tags --always) \
#       --build-arg REVISION=$(git rev-parse --short=12 HEAD) .
#   docker run --rm -e INDEXER_REDIS_URL=redis://redis:6379/0 indexer setup
#   docker run -d -e INDEXER_REDIS_URL=redis://redis:6379/0 -p 9464:9464 indexer run
#
# 'make image' passes VERSION and REVISION (the build context has no .git).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first: this layer is reused while only the code changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=devel
ARG REVISION=unknown
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -buildvcs=false \
      -ldflags "-s -w -X github.com/streamindex/indexer/internal/buildinfo.version=${VERSION} -X github.com/streamindex/indexer/internal/buildinfo.revision=${REVISION}" \
      -o /out/indexer ./cmd/indexer \
 && /out/indexer --version \
 && mkdir -p /out/data

# distroless/static: CA certificates (for rediss:// and tls://), tzdata,
# /etc/passwd with the nonroot user, and nothing else: no shell, no
# package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/indexer /usr/local/bin/indexer
COPY --from=build --chown=65532:65532 /out/data /var/lib/indexer
# 65532: distroless's "nonroot"; numeric so that runAsNonRoot can check it.
USER 65532:65532
# In a container the metrics must listen beyond loopback to be scraped.
ENV INDEXER_METRICS_ADDR=:9464
EXPOSE 9464
# --embedded-nats keeps its store here; mount a volume on it.
VOLUME ["/var/lib/indexer"]
WORKDIR /var/lib/indexer
ENTRYPOINT ["/usr/local/bin/indexer"]
CMD ["run"]
