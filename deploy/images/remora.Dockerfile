# The control plane and CLI: `remora serve`, `remora token create`, `remora inject`, ...
# Built by deploy/build-images.sh from a staged root filesystem (a static binary).
FROM scratch
ARG VERSION
ARG REVISION
ARG SOURCE
LABEL org.opencontainers.image.title="remora" \
      org.opencontainers.image.description="Remora's control plane and CLI" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY rootfs/ /
# Empty directories owned by the control plane's user: a named volume mounted
# on one starts with its owner and mode.
COPY --chown=1338:1338 owned/ /
# The CA and token key live on a volume here; the root filesystem may be read-only.
ENV REMORA_DATA_DIR=/var/lib/remora
USER 1338:1338
EXPOSE 15010 15012 15014
ENTRYPOINT ["/usr/local/bin/remora"]
CMD ["serve"]
