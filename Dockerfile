# alface on a GPU machine. Install steps are the README's (`make install`), with the gpu extra.
# Run: docker run --gpus all --ipc=host -v "$PWD/work:/work" alface train /work (docs/SCALING.md).
# torch 2.14.1 from PyPI is a CUDA 13 build (its own CUDA libraries; NVIDIA driver >= 580);
# faiss-gpu-cu12 brings its CUDA 12 runtime as pip packages, so the base image needs no toolkit.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common make git ca-certificates \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/alface
COPY . .
RUN make install EXTRAS=gpu,dev PYTHON=python3.11

ENV PATH=/opt/alface/.venv/bin:$PATH
ENTRYPOINT ["alface"]
CMD ["--help"]
