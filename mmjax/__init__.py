"""mmjax: building blocks of multimodal models in JAX/Flax."""
