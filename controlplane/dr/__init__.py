"""Disaster recovery: restore drills and the RTO/RPO tracker."""
