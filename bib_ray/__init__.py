"""bib-ray: offline model-based design of biological sequences with bidirectional learning
on pre-trained language-model proxies (BIB, Chen et al., ICML 2023), distributed with Ray."""

__version__ = "0.1.0"
