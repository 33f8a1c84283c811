# syntax=docker/dockerfile:1
# Build: CGO off, trimmed paths, the version stamped in.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY provider/ provider/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/vault-csi-provider ./cmd/vault-csi-provider

# Run: distroless static, no shell, non-root by default (the chart decides
# the user, since the socket directory is a hostPath).
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="vault-csi-provider" \
      org.opencontainers.image.description="Vault provider for the Secrets Store CSI Driver" \
      org.opencontainers.image.source="https://github.com/okevault/vault-csi-provider" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MPL-2.0"
COPY --from=build /out/vault-csi-provider /bin/vault-csi-provider
USER 65532:65532
ENTRYPOINT ["/bin/vault-csi-provider"]
