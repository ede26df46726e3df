"""Dogs vs. Cats Redux competition kit.

Importing the package is cheap and side-effect free: TensorFlow and the Kaggle client
are imported inside the functions that need them, so `import kit` works with no
credentials and no GPU.
"""

__version__ = "0.1.0"
COMPETITION = "dogs-vs-cats-redux-kernels-edition"
