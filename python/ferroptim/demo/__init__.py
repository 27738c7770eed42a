"""The project's main jobs on real data.

``python -m ferroptim demo`` trains a small CNN on scikit-learn's bundled digits;
``python -m ferroptim compare`` measures the guide's claims on the same task.
"""
