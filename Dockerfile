# alface on a GPU machine; docs/SCALING.md says how to build and run it.
# torch 2.14.1 from PyPI is a CUDA 13.0 build (torch.version.cuda == "13.0"; it brings its own
# CUDA libraries as pip packages and needs an NVIDIA driver >= 580 on the host). The base image's
# CUDA major matches it, so the NVIDIA Container Toolkit refuses a host driver too old for CUDA 13
# when the container starts (NVIDIA_REQUIRE_CUDA) instead of torch failing later. The gpu extra's
# FAISS (faiss-gpu: PyPI has no CUDA 13 build) brings a CUDA 12 runtime as pip packages; it runs
# on the same driver. tests/test_dockerfile.py checks the CUDA major, the extra, USER and VOLUME.
FROM nvidia/cuda:13.0.1-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common make git ca-certificates \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

# Installed by root, read-only for the user that runs it.
WORKDIR /opt/alface
COPY . .
RUN make install EXTRAS=gpu,dev PYTHON=python3.11

# A non-root user; the work directory (store, crops, models) is a volume that outlives the
# container. With a bind mount, run as its owner: docker run --user "$(id -u):$(id -g)" ...
RUN useradd --create-home --uid 1000 alface && mkdir /work && chown alface:alface /work
USER alface
ENV PATH=/opt/alface/.venv/bin:$PATH MPLCONFIGDIR=/tmp/matplotlib
VOLUME ["/work"]
WORKDIR /work
ENTRYPOINT ["alface"]
CMD ["--help"]
