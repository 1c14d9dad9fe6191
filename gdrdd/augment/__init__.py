from gdrdd.augment.dsa import DSA, DSAParams

__all__ = ["DSA", "DSAParams"]
