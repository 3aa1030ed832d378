# Staging: what differs from the other environment. The rest is common/ (linked).
terraform {
  backend "gcs" {
    prefix = "sluice/staging"
  }
}

locals {
  environment   = "staging"
  database_tier = "db-custom-2-7680"
}
