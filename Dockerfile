# The indexer binary in a minimal image: static, non-root, no shell.
#   docker build -t indexer .
#   docker run --rm indexer --help
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/indexer ./cmd/indexer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/indexer /usr/local/bin/indexer
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/indexer"]
