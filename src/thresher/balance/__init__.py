"""Scarcity and imbalance: resampling, class weights, augmentation, targeted generation."""
