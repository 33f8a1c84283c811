# syntax=docker/dockerfile:1
# Base images are pinned by digest: a tag can move, a digest is what was
# reviewed. The build image's Go must be at least go.mod's (the golang
# images set GOTOOLCHAIN=local). Refresh both with
#   crane digest golang:<go.mod's version>-bookworm
#   crane digest gcr.io/distroless/static-debian12:nonroot
# and update test/image if the tags change.

# Build: CGO off, trimmed paths, the version stamped in. The build stage runs
# on the builder's own platform and cross-compiles for the target, so
# `docker buildx build --platform linux/amd64,linux/arm64` (OKE's Ampere A1
# pools are arm64) needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm@sha256:dc9ad6c05acc7a88e5b71bde60a5fe3bd4b9f0db209011711b464107438a8107 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY provider/ provider/
ARG VERSION=dev
# Set by BuildKit from --platform; empty (the builder's own) otherwise.
ARG TARGETOS TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/vault-csi-provider ./cmd/vault-csi-provider

# Run: distroless static, no shell, non-root by default (the chart decides
# the user, since the socket directory is a hostPath).
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG VERSION=dev
LABEL org.opencontainers.image.title="vault-csi-provider" \
      org.opencontainers.image.description="Vault provider for the Secrets Store CSI Driver" \
      org.opencontainers.image.source="https://github.com/okevault/vault-csi-provider" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/vault-csi-provider /bin/vault-csi-provider
USER 65532:65532
ENTRYPOINT ["/bin/vault-csi-provider"]
