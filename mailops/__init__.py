"""mailops: the email integration toolkit of a real-estate sales CRM."""

__version__ = "0.1.0"
